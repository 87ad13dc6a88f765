"""The one Bus interface that workers, the API, the CLI and the TUI use.

Backends live beside this file (redis.py, kafka.py); nothing outside
`sandbox/bus/` imports `redis` or `aiokafka`.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sandbox.protocol import AgentInfo, Response, Task

# A handler gets the task and how many times it has been delivered (1 = first
# time) and returns the response to publish. The bus acknowledges the task only
# after that response is on the broker.
Handler = Callable[[Task, int], Awaitable[Response]]


class BusError(Exception):
    """An expected failure talking to the broker, with a message for people."""


class BusUnavailable(BusError):
    """The broker cannot be reached."""


class RequestTimeout(BusError):
    """No response arrived in time."""

    def __init__(self, task_id: str, agent: str, timeout: float):
        super().__init__(f"no response from '{agent}' for task {task_id} within {timeout:g}s")
        self.task_id = task_id
        self.agent = agent
        self.timeout = timeout


class MessageTooLarge(BusError):
    """The message is larger than the broker accepts."""


@dataclass(slots=True)
class ConsumerInfo:
    """One consumer (a worker process) in an agent's group."""

    name: str
    pending: int = 0  # delivered to it, not yet acknowledged
    idle_ms: int | None = None
    partitions: list[int] = field(default_factory=list)  # Kafka only


@dataclass(slots=True)
class QueueStats:
    """The state of one agent's queue: what waits, who consumes it."""

    agent: str
    channel: str  # stream or topic
    exists: bool = True
    length: int = 0  # Redis: stream length; Kafka: messages retained
    lag: int = 0  # not yet delivered to the group
    pending: int = 0  # delivered, not yet acknowledged
    partitions: int | None = None  # Kafka only
    consumers: list[ConsumerInfo] = field(default_factory=list)

    @property
    def waiting(self) -> int:
        """Tasks not yet answered: what a backend switch must carry over."""
        return self.lag + self.pending

    @property
    def idle_consumers(self) -> list[str]:
        """Kafka consumers that own no partition (more replicas than partitions)."""
        if self.partitions is None:
            return []
        return [c.name for c in self.consumers if not c.partitions]


@dataclass(slots=True)
class TapMessage:
    """One message seen on the broker by the read-only tap."""

    channel: str  # topic or stream
    kind: str  # "task" | "response" | "dlq" | "registry"
    timestamp: float
    raw: bytes
    doc: dict[str, Any] | None  # the decoded JSON object, None when it does not decode
    task_id: str | None = None
    agent: str | None = None
    status: str | None = None
    position: str = ""  # stream id or partition:offset


@dataclass(slots=True)
class DeadLetter:
    id: str
    source: str  # the stream or topic the message came from
    reason: str
    delivery_count: int
    raw: bytes
    timestamp: float


class Bus(abc.ABC):
    """One API over Redis and Kafka, with Laddr 0.9.x's wire format."""

    backend: ClassVar[str]

    def __init__(self) -> None:
        self.worker_id: str | None = None

    # -- lifecycle ---------------------------------------------------------
    @abc.abstractmethod
    async def connect(self) -> None:
        """Open connections; raise BusUnavailable with a clear message."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> Bus:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @abc.abstractmethod
    async def ping(self) -> bool: ...

    @abc.abstractmethod
    async def ensure_topology(self, agents: Iterable[str], partitions: int | None = None) -> None:
        """Create the streams/groups or topics the stack expects."""

    async def add_partitions(self, agent: str, total: int) -> int:
        """Grow an agent's topic to `total` partitions; returns how many it has after."""
        raise BusError(f"partitions exist on Kafka only, not on {self.backend}")

    @abc.abstractmethod
    async def channels(self) -> list[str]:
        """The task streams / topics that exist on the broker (for `verify`)."""

    # -- tasks and responses -------------------------------------------------
    @abc.abstractmethod
    async def publish_task(self, agent: str, payload: Any, *, task_id: str | None = None) -> Task: ...

    @abc.abstractmethod
    async def publish_raw(self, agent: str, raw: bytes, *, key: str | None = None) -> None:
        """Put bytes on an agent's queue as they are (migration, DLQ replay, tests)."""

    @abc.abstractmethod
    async def publish_response(self, response: Response) -> None: ...

    @abc.abstractmethod
    async def wait_for_response(self, task_id: str, timeout: float) -> Response:
        """Wait for the response of a task already published; RequestTimeout if none."""

    async def request(self, agent: str, payload: Any, timeout: float = 30.0) -> Response:
        """Publish a task and wait for its response, without any per-request join."""
        task = Task(agent_name=agent, payload=payload)
        waiter = await self._expect(task.task_id)
        try:
            await self.publish_task(agent, payload, task_id=task.task_id)
            return await self._await_response(waiter, task.task_id, agent, timeout)
        finally:
            self._forget(task.task_id)

    @abc.abstractmethod
    async def _expect(self, task_id: str) -> asyncio.Future[Response]:
        """Register interest in a response before the task goes out."""

    @abc.abstractmethod
    def _forget(self, task_id: str) -> None: ...

    async def _await_response(
        self, waiter: asyncio.Future[Response], task_id: str, agent: str, timeout: float
    ) -> Response:
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except asyncio.TimeoutError:
            raise RequestTimeout(task_id, agent, timeout) from None

    async def follow_responses(self) -> None:
        """Start the response listener now, so get_response() sees every later response."""
        await self._ensure_listener()

    @abc.abstractmethod
    async def _ensure_listener(self) -> None: ...

    @abc.abstractmethod
    async def get_response(self, task_id: str) -> Response | None:
        """A response already published, if the broker or this client still has it."""

    # -- consuming ---------------------------------------------------------
    @abc.abstractmethod
    async def serve(
        self,
        agent: str,
        consumer: str,
        handler: Handler,
        *,
        concurrency: int = 8,
        stop: asyncio.Event,
    ) -> None:
        """Consume an agent's tasks until `stop` is set, then finish in-flight work.

        At-least-once: a task is acknowledged only after its response is
        published. Undecodable messages go to the dead-letter place.
        """

    # -- registry ------------------------------------------------------------
    @abc.abstractmethod
    async def register_agent(self, info: AgentInfo) -> None:
        """Write (or refresh, as a heartbeat) an agent's registry entry."""

    @abc.abstractmethod
    async def agents(self) -> dict[str, AgentInfo]: ...

    # -- inspection ----------------------------------------------------------
    @abc.abstractmethod
    async def queue_stats(self, agents: Iterable[str]) -> list[QueueStats]: ...

    @abc.abstractmethod
    def tap(self, *, last: int = 0) -> AsyncIterator[TapMessage]:
        """Every message on the broker from now on (and the last N before), read-only."""

    @abc.abstractmethod
    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]: ...

    @abc.abstractmethod
    async def requeue_dead_letter(self, dead: DeadLetter) -> None:
        """Put a dead letter back on its agent's queue and remove it from the DLQ."""

    # -- migration -----------------------------------------------------------
    @abc.abstractmethod
    async def drain_pending(self, agent: str, sink: Callable[[bytes], Awaitable[None]]) -> int:
        """Hand every unanswered task of an agent to `sink`, acknowledging each after.

        Used to move tasks to the other broker; the agent's workers must be
        stopped first. Returns how many were moved.
        """
