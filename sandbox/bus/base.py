"""The one Bus interface that workers, the API, the CLI and the TUI use.

It also does what both backends do alike: publishing a task, request and
wait_for_response over one response listener per client, serve's frame.
Backends live in redis/ and kafka/ beside this file; nothing outside
`sandbox/bus/` imports `redis` or `aiokafka`.
"""

from __future__ import annotations

import abc
import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from sandbox.bus.waiters import ResponseWaiters, wait_done, with_job_id
from sandbox.config import Settings
from sandbox.protocol import AgentInfo, DecodeError, Response, Task, decode_task, job_id_of, with_earlier_deliveries

if TYPE_CHECKING:  # a plain dataclass; the Kafka bus fills it
    from sandbox.bus.kafka.health import PartitionHealth

# A handler gets the task and how many times it has been delivered (1 = first
# time) and returns the response to publish. The bus acknowledges the task only
# after that response is on the broker.
Handler = Callable[[Task, int], Awaitable[Response]]
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


class BusError(Exception):
    """An expected failure talking to the broker, with a message for people."""


class BusUnavailable(BusError):
    """The broker cannot be reached."""


class BusNotConnected(BusUnavailable):
    """The bus is not connected, or was closed on purpose: a reader stops instead of retrying."""


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
    added: int = 0  # tasks ever put on it (Redis entries-added, Kafka end offsets): rates come from this
    lag: int = 0  # not yet delivered to the group
    pending: int = 0  # delivered, not yet acknowledged
    partitions: int | None = None  # Kafka only
    consumers: list[ConsumerInfo] = field(default_factory=list)
    rebalancing: bool = False  # Kafka: the group is reassigning partitions; who owns what is not known yet

    @property
    def waiting(self) -> int:
        """Tasks not yet answered: what a backend switch must carry over."""
        return self.lag + self.pending

    @property
    def idle_consumers(self) -> list[str]:
        """Kafka consumers that own no partition (more replicas than partitions); none while rebalancing."""
        if self.partitions is None or self.rebalancing:
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


class Consumer(Protocol):
    """One worker's loop on one agent's queue (each backend's consumer.py)."""

    async def run(self, stop: asyncio.Event) -> None: ...


class Inspector(Protocol):
    """Looking at the broker without consuming (each backend's inspect.py); the Bus methods say what each does."""

    async def queue_stats(self, agents: Iterable[str]) -> list[QueueStats]: ...
    def tap(self, last: int = 0, since: float | None = None,
            at: tuple[str, str] | None = None) -> AsyncIterator[TapMessage]: ...
    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]: ...
    async def history(self, last: int) -> list[TapMessage]: ...
    async def requeue_dead_letter(self, dead: DeadLetter) -> None: ...
    async def drop_dead_letter(self, dead: DeadLetter) -> None: ...
    async def drain_pending(self, agent: str, sink: Callable[[bytes], Awaitable[None]]) -> int: ...


def translate_errors(translate: Callable[[Any, Exception], BusError | None]) -> Callable[[F], F]:
    """A decorator for a backend's methods: the client library's errors become BusError/BusUnavailable.

    `translate(owner, exc)` returns the error to raise instead, or None to let `exc` through.
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        async def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(self, *args, **kwargs)
            except Exception as exc:
                error = translate(self, exc)
                if error is None:
                    raise
                raise error from None

        return guarded  # type: ignore[return-value]

    return decorate


class Bus(abc.ABC):
    """One API over Redis and Kafka, with Laddr 0.9.x's wire format."""

    backend: ClassVar[str]
    # Whether tasks carry `job_id` = task id: where answers may come back naming no task (Kafka).
    adds_job_id: ClassVar[bool] = False
    inspector: Inspector  # set by the backend

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.worker_id: str | None = None
        self._waiters = ResponseWaiters()  # resolved by the backend's response listener
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()  # set once the listener follows responses (or failed to)

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
    async def publish_task(self, agent: str, payload: Any, *, task_id: str | None = None) -> Task:
        task = self._task(agent, payload, task_id)
        await self.publish_raw(agent, task.encode(), key=task.task_id)  # Kafka: keyed by task_id
        return task

    def _task(self, agent: str, payload: Any, task_id: str | None = None) -> Task:
        """A task as it goes out (on Kafka its payload carries the job id); one id made, not two."""
        task = Task(agent_name=agent, payload=payload, task_id=task_id) if task_id else Task(agent, payload)
        task.payload = with_job_id(payload, task.task_id, self.adds_job_id)
        return task

    async def publish_moved(self, agent: str, raw: bytes) -> None:
        """A task moved from the other broker, as this broker's clients would have sent it
        (keyed by its task id; on Kafka with its job id). Bytes that do not decode move as they are."""
        try:
            task = decode_task(raw)
        except DecodeError:
            await self.publish_raw(agent, raw)
            return
        task.payload = with_job_id(task.payload, task.task_id, self.adds_job_id)
        await self.publish_raw(agent, task.encode(), key=task.task_id)

    @abc.abstractmethod
    async def publish_raw(self, agent: str, raw: bytes, *, key: str | None = None) -> None:
        """Put bytes on an agent's queue as they are (migration, DLQ replay, tests)."""

    @abc.abstractmethod
    async def publish_response(self, response: Response) -> None: ...

    async def wait_for_response(self, task_id: str, timeout: float) -> Response:
        """Wait for the response of a task already published; RequestTimeout if none."""
        waiter = await self.expect(task_id)
        try:
            known = await self.get_response(task_id)
            if known is not None:
                return known
            return await self._await_response(waiter, task_id, "?", timeout)
        finally:
            self.forget(task_id)

    async def request(self, agent: str, payload: Any, timeout: float = 30.0) -> Response:
        """Publish a task and wait for its response, without any per-request join."""
        task = self._task(agent, payload)
        waiter = await self.expect(task.task_id, job_id_of(task.payload))
        try:
            await self.publish_raw(agent, task.encode(), key=task.task_id)
            return await self._await_response(waiter, task.task_id, agent, timeout)
        finally:
            self.forget(task.task_id)

    async def expect(self, task_id: str, job_id: str | None = None) -> asyncio.Future[Response]:
        """Register interest in a response before the task goes out; forget(task_id) after.

        `job_id`: the job id the payload carries, for answers that name no task (Laddr on Kafka).
        """
        await self.follow_responses()
        return self._waiters.add(task_id, job_id)

    def forget(self, task_id: str) -> None:
        self._waiters.discard(task_id)

    async def _await_response(
        self, waiter: asyncio.Future[Response], task_id: str, agent: str, timeout: float
    ) -> Response:
        await wait_done(waiter, timeout)
        if not waiter.done():
            raise RequestTimeout(task_id, agent, timeout)
        return waiter.result()  # or the error the listener failed it with (the bus closed)

    def _start_listener(self) -> None:
        """Start the backend's response listener (_listen) unless it runs: one per client, not per request."""
        if self._listener is None or self._listener.done():
            self._listening.clear()
            self._listener = asyncio.create_task(self._listen(), name=f"{self.backend}-response-listener")

    async def _stop_listener(self) -> None:
        """On close: no more listening, and whoever still waits for a response is told why."""
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        self._waiters.fail_all(BusUnavailable("the bus was closed"))

    @abc.abstractmethod
    async def _listen(self) -> None:
        """Follow every response on the broker into the waiters; set _listening once following."""

    @abc.abstractmethod
    async def follow_responses(self) -> None:
        """Start the response listener now (once per client), so get_response() sees every later response."""

    @abc.abstractmethod
    async def get_response(self, task_id: str) -> Response | None:
        """A response already published, if the broker or this client still has it."""

    # -- consuming ---------------------------------------------------------
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
        await self.consumer_for(agent, consumer, handler, concurrency).run(stop)

    @abc.abstractmethod
    def consumer_for(self, agent: str, name: str, handler: Handler, concurrency: int) -> Consumer:
        """The backend's consumer, built on its client (never on the bus)."""

    # -- registry ------------------------------------------------------------
    @abc.abstractmethod
    async def register_agent(self, info: AgentInfo) -> None:
        """Write (or refresh, as a heartbeat) an agent's registry entry."""

    @abc.abstractmethod
    async def agents(self) -> dict[str, AgentInfo]: ...

    # -- inspection and migration: the backend's inspector (its inspect.py) ---
    async def queue_stats(self, agents: Iterable[str]) -> list[QueueStats]:
        return await self.inspector.queue_stats(agents)

    async def partition_health(self, agents: Iterable[str]) -> list[PartitionHealth]:
        """Leader and in-sync replicas of each partition of the agents' queues (Kafka; Redis: none)."""
        return []

    def tap(self, *, last: int = 0, since: float | None = None,
            at: tuple[str, str] | None = None) -> AsyncIterator[TapMessage]:
        """Every message on the broker from now on (and the last N before), read-only.

        `since` (epoch seconds): start at that time instead; `at` = (topic or stream, position):
        that one from a Kafka "partition:offset" or a Redis stream id on, the others from now.
        """
        return self.inspector.tap(last, since, at)

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return await self.inspector.dead_letters(limit)

    async def history(self, last: int = 10_000) -> list[TapMessage]:
        """The messages the broker still holds (the newest `last`), oldest first: what a trace reads."""
        return await self.inspector.history(last)

    async def requeue_dead_letter(self, dead: DeadLetter) -> None:
        """Put a dead letter back on its agent's queue (its delivery count goes on) and remove it from the DLQ."""
        await self.inspector.requeue_dead_letter(replace(dead, raw=with_earlier_deliveries(dead.raw, dead.delivery_count)))

    async def drop_dead_letter(self, dead: DeadLetter) -> None:
        """Remove a dead letter for good (Redis: XDEL; Kafka: a skip record the DLQ reader honours)."""
        await self.inspector.drop_dead_letter(dead)

    async def drain_pending(self, agent: str, sink: Callable[[bytes], Awaitable[None]]) -> int:
        """Hand every unanswered task of an agent to `sink`, acknowledging each after.

        Used to move tasks to the other broker; the agent's workers must be
        stopped first. Returns how many were moved.
        """
        return await self.inspector.drain_pending(agent, sink)
