"""Pieces both backends share: response futures, reconnect backoff, size limits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
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

    def waiting(self, task_id: str) -> bool:
        future = self._futures.get(task_id)
        return future is not None and not future.done()

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
            return fit(await handler(task, count)), None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the handler's failure is data here, not a crash of the consumer
            reason = f"{type(exc).__name__}: {exc}"
            if count >= max_deliveries:
                return _gave_up(task, count, reason), f"failed {count} time(s): {reason}"
            log.warning("task %s failed on attempt %d (%s); retrying in %.2fs", task.task_id, count, reason, delay)
            await asyncio.sleep(delay)
            count, delay = count + 1, min(2.0, delay * 2)


def fit(response: Response) -> Response:
    """A response the broker will take: a result over the size limit becomes an error saying so."""
    size = len(response.encode())
    if size <= MAX_MESSAGE_BYTES:
        return response
    log.warning("task %s: response of %d bytes is over the limit; answering with an error", response.task_id, size)
    return Response(
        task_id=response.task_id,
        status="error",
        error=f"the agent's result is {size:,} bytes; the sandbox sends at most {MAX_MESSAGE_BYTES:,} "
        "(Kafka's default limit) — return a reference to large data instead",
        agent=response.agent,
        worker_id=response.worker_id,
        duration_ms=response.duration_ms,
        delivery_count=response.delivery_count,
    )


def _gave_up(task: Task, attempts: int, reason: str) -> Response:
    return Response(
        task_id=task.task_id,
        status="error",
        error=f"gave up after {attempts} attempt(s), sent to the dead-letter queue: {reason}",
        agent=task.agent_name,
        delivery_count=attempts,
    )


class BrokerWatch:
    """Knows whether the broker answers, and says so in the log when that changes.

    Client libraries reconnect on their own (aiokafka retries every request;
    redis-py reconnects on the next command); what they do not do is tell a
    person reading the log that the broker went away and came back. `probe`
    raises when the broker cannot be reached. While the broker is down the
    probe backs off (0.25 s doubling to 2 s); while it is up it runs every
    `every` seconds. A refused connection counts at once; a timeout only the
    second time in a row (a loaded laptop is not an outage).
    """

    def __init__(self, what: str, probe: Callable[[], Awaitable[None]], logger: logging.Logger, every: float = 1.0):
        self.what = what
        self.probe = probe
        self.log = logger
        self.every = every
        self.reachable = True
        self.down_since: float | None = None
        self.error: str = ""
        self.outages = 0
        self.up = asyncio.Event()
        self.up.set()

    async def wait_up(self, timeout: float) -> None:
        """Return when the broker answers again, or after `timeout` seconds."""
        try:
            await asyncio.wait_for(self.up.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    async def run(self) -> None:
        backoff = Backoff(first=0.25, most=2.0)
        timeouts = 0
        while True:
            try:
                await self.probe()
            except asyncio.CancelledError:
                raise
            except (asyncio.TimeoutError, TimeoutError) as exc:
                timeouts += 1
                if timeouts >= 2:
                    self._lost(exc or "timed out", backoff.delay)
            except Exception as exc:  # refused, unreachable, DNS: the broker is not there
                timeouts = 0
                self._lost(exc, backoff.delay)
            else:
                timeouts = 0
                backoff.reset()
                if not self.reachable:
                    down = time.monotonic() - (self.down_since or time.monotonic())
                    self.log.warning("%s is back after %.1fs; clients reconnected", self.what, down)
                    self.reachable, self.down_since, self.error = True, None, ""
                    self.up.set()
            if self.reachable:
                await asyncio.sleep(self.every)
            else:
                await backoff.sleep()

    def _lost(self, exc: object, delay: float) -> None:
        self.error = str(exc) or type(exc).__name__
        if self.reachable:
            self.reachable, self.down_since = False, time.monotonic()
            self.up.clear()
            self.outages += 1
            self.log.warning("lost %s (%s); reconnecting with backoff (next try in %.1fs)", self.what, self.error, delay)

    async def unavailable(self) -> str | None:
        """Why the broker cannot be used right now, or None when it can.

        While it is marked down, probe once more first: a caller right after
        the broker came back is not refused for up to a probe interval.
        """
        if self.reachable:
            return None
        try:
            await asyncio.wait_for(self.probe(), 1.0)
        except asyncio.CancelledError:
            raise
        except Exception:
            pass
        else:
            return None
        down = time.monotonic() - (self.down_since or time.monotonic())
        return f"{self.what} unreachable for {down:.0f}s ({self.error}); reconnecting"


async def tcp_probe(addresses: list[tuple[str, int]], timeout: float = 2.0) -> None:
    """Succeeds when any of the addresses accepts a TCP connection."""
    error: BaseException | None = None
    for host, port in addresses:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            error = exc
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return
    if error is not None:
        raise error


class RepeatFilter(logging.Filter):
    """Lets one of each repeated library message through per `window` seconds.

    While a broker is down, aiokafka logs the same connection error ten times a
    second from every client; one line per kind, with a count, says as much.
    """

    def __init__(self, window: float = 30.0):
        super().__init__()
        self.window = window
        self._seen: dict[tuple[str, object], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.msg)
        now = time.monotonic()
        last, suppressed = self._seen.get(key, (0.0, 0))
        if now - last < self.window:
            self._seen[key] = (last, suppressed + 1)
            return False
        self._seen[key] = (now, 0)
        if suppressed:
            record.msg = f"{record.msg} (and {suppressed} more like it in the last {now - last:.0f}s)"
        return True
