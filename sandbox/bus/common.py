"""Pieces both backends share: response futures, reconnect backoff, size limits."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import orjson

from sandbox.bus.base import Handler, MessageTooLarge, TapMessage
from sandbox.protocol import Response, Task, agent_of_channel

log = logging.getLogger("sandbox.bus")

# One limit on both brokers, below Kafka's default 1 MiB message size, so that
# a payload accepted on Redis is not refused after switching to Kafka.
MAX_MESSAGE_BYTES = 900_000


def check_size(raw: bytes) -> None:
    if len(raw) > MAX_MESSAGE_BYTES:
        raise MessageTooLarge(
            f"message is {len(raw):,} bytes; the sandbox accepts at most {MAX_MESSAGE_BYTES:,} "
            "(Kafka's default limit) — send a reference to large data instead"
        )


def dlq_reason(delivery_count: int) -> str:
    return f"delivered {delivery_count} times without being answered (worker crashed on it?)"


class ResponseWaiters:
    """Futures keyed by task_id, resolved by one long-lived response listener."""

    def __init__(self) -> None:
        self._futures: dict[str, asyncio.Future[Response]] = {}

    def add(self, task_id: str) -> asyncio.Future[Response]:
        future = self._futures.get(task_id)
        if future is None or future.done():
            future = asyncio.get_running_loop().create_future()
            self._futures[task_id] = future
        return future

    def discard(self, task_id: str) -> None:
        self._futures.pop(task_id, None)

    def ids(self) -> list[str]:
        return list(self._futures)

    def resolve(self, response: Response) -> bool:
        future = self._futures.get(response.task_id)
        if future is None or future.done():
            return False
        future.set_result(response)
        return True

    def fail_all(self, error: BaseException) -> None:
        for future in self._futures.values():
            if not future.done():
                future.set_exception(error)
                future.exception()  # whoever waits sees it; nobody waiting is no error
        self._futures.clear()


class Backoff:
    """Exponential reconnect delay with jitter: 0.2s doubling up to 5s."""

    def __init__(self, first: float = 0.2, most: float = 5.0):
        self.first = first
        self.most = most
        self.delay = first

    def reset(self) -> None:
        self.delay = self.first

    def _advance(self) -> float:
        delay = self.delay * random.uniform(0.8, 1.2)
        self.delay = min(self.most, self.delay * 2)
        return delay

    async def sleep(self) -> None:
        await asyncio.sleep(self._advance())

    async def sleep_or(self, stop: asyncio.Event) -> None:
        """Sleep, but wake up at once when `stop` is set."""
        try:
            await asyncio.wait_for(stop.wait(), self._advance())
        except asyncio.TimeoutError:
            pass


def describe_message(channel: str, kind: str, raw: bytes, timestamp: float, position: str) -> TapMessage:
    """A tap line from raw bytes: whatever decodes is shown, nothing is required."""
    doc: dict[str, Any] | None
    try:
        loaded = orjson.loads(raw)
        doc = loaded if isinstance(loaded, dict) else None
    except (orjson.JSONDecodeError, TypeError):
        doc = None
    message = TapMessage(channel=channel, kind=kind, timestamp=timestamp, raw=raw, doc=doc, position=position)
    if doc is not None:
        task_id = doc.get("task_id")
        message.task_id = task_id if isinstance(task_id, str) else None
        agent = doc.get("agent_name") or doc.get("agent")
        message.agent = agent if isinstance(agent, str) else agent_of_channel(channel)
        status = doc.get("status")
        message.status = status if isinstance(status, str) else ("queued" if kind == "task" else None)
    else:
        message.agent = agent_of_channel(channel)
        message.status = "undecodable" if kind != "dlq" else None
    return message


async def answer(handler: Handler, task: Task, delivery_count: int, max_deliveries: int) -> tuple[Response, str | None]:
    """Run a handler, retrying a raising one in place up to `max_deliveries` attempts.

    Returns the response to publish and, when the task is given up, the reason
    for the dead-letter place. The caller is answered either way (an "error"
    response), so nobody waits for a task that will never succeed.
    """
    count, delay = delivery_count, 0.05
    while True:
        if count > max_deliveries:  # e.g. a task that crashed workers again and again
            reason = dlq_reason(count - 1)
            return _gave_up(task, count - 1, reason), reason
        try:
            return await handler(task, count), None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the handler's failure is data here, not a crash of the consumer
            reason = f"{type(exc).__name__}: {exc}"
            if count >= max_deliveries:
                return _gave_up(task, count, reason), f"failed {count} time(s): {reason}"
            log.warning("task %s failed on attempt %d (%s); retrying in %.2fs", task.task_id, count, reason, delay)
            await asyncio.sleep(delay)
            count, delay = count + 1, min(2.0, delay * 2)


def _gave_up(task: Task, attempts: int, reason: str) -> Response:
    return Response(
        task_id=task.task_id,
        status="error",
        error=f"gave up after {attempts} attempt(s), sent to the dead-letter queue: {reason}",
        agent=task.agent_name,
        delivery_count=attempts,
    )
