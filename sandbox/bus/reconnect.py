"""Living with a broker that goes away: reconnect backoff, outage watching, probes, quiet logs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class Backoff:
    """Exponential reconnect delay with jitter: 0.2s doubling up to 5s."""

    def __init__(self, first: float = 0.2, most: float = 5.0):
        self.first = first
        self.most = most
        self.delay = first

    def reset(self) -> None:
        self.delay = self.first

    def next_delay(self) -> float:
        """The next pause (jittered), doubling the one after it."""
        delay = self.delay * random.uniform(0.8, 1.2)
        self.delay = min(self.most, self.delay * 2)
        return delay

    async def sleep(self) -> None:
        await asyncio.sleep(self.next_delay())

    async def sleep_or(self, stop: asyncio.Event) -> None:
        """Sleep, but wake up at once when `stop` is set."""
        try:
            await asyncio.wait_for(stop.wait(), self.next_delay())
        except asyncio.TimeoutError:
            pass


async def until_answered(
    call: Callable[[], Awaitable[T]],
    errors: tuple[type[BaseException], ...],
    backoff: Backoff,
    logger: logging.Logger,
    message: str,
    fatal: tuple[type[BaseException], ...] = (),
) -> T:
    """`call()` again and again, with backoff, until the broker answers; each failure logged.

    For readers (tap, listeners) that keep their positions meanwhile, so nothing
    is missed. `message` has two placeholders: the error and the next delay.
    """
    while True:
        try:
            result = await call()
        except fatal:  # e.g. the bus was closed on purpose: nothing will answer, stop
            raise
        except errors as exc:
            logger.warning(message, exc or type(exc).__name__, backoff.delay)
            await backoff.sleep()
            continue
        backoff.reset()
        return result


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
