"""Pieces both backends share: response futures, reconnect backoff, size limits."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson

from sandbox.bus.base import MessageTooLarge, TapMessage
from sandbox.protocol import Response, agent_of_channel

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
