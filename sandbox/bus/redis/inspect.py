"""Looking at Redis without consuming: queue stats, the live tap, dead letters, draining for a switch."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TypeVar

from sandbox.bus.base import BusNotConnected, BusUnavailable, ConsumerInfo, DeadLetter, QueueStats, TapMessage
from sandbox.bus.tap import describe_message
from sandbox.bus.reconnect import Backoff, until_answered
from sandbox.bus.redis.client import DATA, LOST, RedisClient, id_key, text, unavailable
from sandbox.protocol import (
    REDIS_DLQ, REDIS_RESPONSE_PREFIX, REDIS_RESPONSES_STREAM, REDIS_TASKS_PREFIX, redis_group, redis_stream,
)

log = logging.getLogger("sandbox.bus.redis")
T = TypeVar("T")

MIGRATOR = "laddr-sandbox-migrator"  # the consumer name drain_pending claims with


def just_before(entry_id: str) -> str:
    """The XREAD position that returns `entry_id` itself (XREAD is exclusive)."""
    ms, seq = id_key(entry_id)
    return f"{ms}-{seq - 1}" if seq > 0 else f"{max(0, ms - 1)}-{2**64 - 1}"


class RedisInspector:
    """The Bus's inspection and migration methods on Redis (base.Inspector)."""

    def __init__(self, client: RedisClient):
        self.client = client
        self.url = client.url

    @unavailable
    async def channels(self) -> list[str]:
        names = [text(k) async for k in self.client.redis.scan_iter(match=f"{REDIS_TASKS_PREFIX}*", _type="stream", count=10_000)]
        return sorted(names)

    @unavailable
    async def queue_stats(self, agents: Iterable[str]) -> list[QueueStats]:
        return [await self._stats(agent) for agent in agents]

    async def _stats(self, agent: str) -> QueueStats:
        redis = self.client.redis
        stream, group = redis_stream(agent), redis_group(agent)
        stats = QueueStats(agent=agent, channel=stream)
        if not await redis.exists(stream):
            stats.exists = False
            return stats
        stats.length = await redis.xlen(stream)
        # workers trim what every group acknowledged: the count ever added is what rates need
        stats.added = int((await redis.xinfo_stream(stream)).get("entries-added") or stats.length)
        groups = {text(g["name"]): g for g in await redis.xinfo_groups(stream)}
        info = groups.get(group)
        if info is None:  # no worker ever joined: everything waits
            stats.lag = stats.length
            return stats
        stats.pending = int(info.get("pending") or 0)
        lag = info.get("lag")
        if lag is None:  # Redis cannot tell after deletions: count what is past the group
            last = text(info.get("last-delivered-id") or "0-0")
            lag = len(await redis.xrange(stream, min=f"({last}", max="+"))
        stats.lag = int(lag)
        for c in await redis.xinfo_consumers(stream, group):
            stats.consumers.append(
                ConsumerInfo(name=text(c["name"]), pending=int(c.get("pending") or 0), idle_ms=int(c.get("idle") or 0))
            )
        return stats

    async def tap(self, last: int = 0, since: float | None = None,
                  at: tuple[str, str] | None = None) -> AsyncIterator[TapMessage]:
        """XREAD over every task stream, the response history and the DLQ (stream ids are times)."""
        streams = [*await self.channels(), REDIS_RESPONSES_STREAM, REDIS_DLQ]
        positions: dict[str, str] = {}
        for name in streams:
            positions[name] = await self._last_id(name) if since is None else f"{max(0, int(since * 1000) - 1)}-{2**64 - 1}"
        if at is not None:
            positions[at[0]] = just_before(at[1])
        if last > 0:
            for message in await self._replay(streams, last):
                yield message
        next_scan = time.monotonic() + 2.0
        backoff = Backoff()
        laddr: asyncio.Queue[TapMessage] = asyncio.Queue()
        follower: asyncio.Task[None] | None = None
        try:
            while True:  # after an outage, go on from the same positions
                if follower is None or follower.done():
                    follower = asyncio.create_task(self._follow_laddr_answers(laddr), name="tap-laddr-answers")
                if time.monotonic() >= next_scan:  # streams of agents that appeared later
                    await self._until_answered(lambda: self._add_streams(positions), backoff)
                    next_scan = time.monotonic() + 2.0
                batch = await self._until_answered(
                    lambda: self.client.redis.xread(positions, count=1000, block=1000), backoff)
                for name, entries in batch or []:
                    name = text(name)
                    for entry_id, fields in entries:
                        positions[name] = text(entry_id)
                        yield self.tap_message(name, text(entry_id), fields)
                while not laddr.empty():
                    yield laddr.get_nowait()
        finally:
            if follower is not None:
                follower.cancel()

    async def _follow_laddr_answers(self, out: asyncio.Queue[TapMessage]) -> None:
        """Laddr's WorkerRunner answers with SETEX + PUBLISH only, on no stream: follow the channels.

        The sandbox's own answers are on laddr:responses too, so only bodies without a task_id
        (Laddr's) are taken here; the channel names the task.
        """
        pubsub = self.client.redis.pubsub()
        try:
            await pubsub.psubscribe(f"{REDIS_RESPONSE_PREFIX}*")
            async for message in pubsub.listen():
                if message["type"] not in (b"pmessage", "pmessage") or b'"task_id"' in message["data"]:
                    continue
                channel = text(message["channel"])
                out.put_nowait(describe_message(channel, "response", message["data"], time.time(), "pub/sub",
                                                task_id=channel[len(REDIS_RESPONSE_PREFIX):]))
        except (*LOST, BusUnavailable):
            return  # the main loop reconnects, then starts following again
        finally:
            with contextlib.suppress(*LOST):
                await pubsub.aclose()

    @unavailable
    async def history(self, last: int) -> list[TapMessage]:
        """The newest `last` messages of every stream, oldest first, then stop (trace)."""
        return await self._replay([*await self.channels(), REDIS_RESPONSES_STREAM, REDIS_DLQ], last)

    @staticmethod
    async def _until_answered(call: Callable[[], Awaitable[T]], backoff: Backoff) -> T:
        return await until_answered(call, (*LOST, BusUnavailable), backoff, log,
                                    "tap lost Redis (%s); reconnecting in %.1fs", fatal=(BusNotConnected,))

    async def _add_streams(self, positions: dict[str, str]) -> None:
        for name in await self.channels():
            positions.setdefault(name, "0-0")

    async def _last_id(self, stream: str) -> str:
        newest = await self.client.redis.xrevrange(stream, count=1)
        return text(newest[0][0]) if newest else "0-0"

    async def _replay(self, streams: list[str], last: int) -> list[TapMessage]:
        found: list[tuple[tuple[int, int], TapMessage]] = []
        for name in streams:
            for entry_id, fields in await self.client.redis.xrevrange(name, count=last):
                found.append((id_key(text(entry_id)), self.tap_message(name, text(entry_id), fields)))
        found.sort(key=lambda pair: pair[0])
        return [message for _, message in found[-last:]]

    @staticmethod
    def tap_message(stream: str, entry_id: str, fields: dict[bytes, bytes]) -> TapMessage:
        raw = fields.get(DATA, b"")
        kind = "response" if stream == REDIS_RESPONSES_STREAM else "dlq" if stream == REDIS_DLQ else "task"
        timestamp = id_key(entry_id)[0] / 1000.0
        message = describe_message(stream, kind, raw, timestamp, entry_id)
        if kind == "dlq":
            message.status = "dead: " + text(fields.get(b"reason", b""))
        return message

    @unavailable
    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        letters = []
        for entry_id, fields in await self.client.redis.xrevrange(REDIS_DLQ, count=limit):
            letters.append(
                DeadLetter(
                    id=text(entry_id),
                    source=text(fields.get(b"source", b"")),
                    reason=text(fields.get(b"reason", b"")),
                    delivery_count=int(text(fields.get(b"delivery_count", b"0")) or 0),
                    raw=fields.get(DATA, b""),
                    timestamp=float(text(fields.get(b"ts", b"0")) or 0),
                )
            )
        return letters

    @unavailable
    async def requeue_dead_letter(self, dead: DeadLetter) -> None:
        pipe = self.client.redis.pipeline(transaction=True)
        pipe.xadd(dead.source, {DATA: dead.raw})
        pipe.xdel(REDIS_DLQ, dead.id)
        await pipe.execute()

    @unavailable
    async def drop_dead_letter(self, dead: DeadLetter) -> None:
        await self.client.redis.xdel(REDIS_DLQ, dead.id)

    @unavailable
    async def drain_pending(self, agent: str, sink: Callable[[bytes], Awaitable[None]]) -> int:
        redis = self.client.redis
        stream, group, me = redis_stream(agent), redis_group(agent), MIGRATOR
        if not await redis.exists(stream):
            return 0
        await self.client.ensure_group(agent)
        moved = 0
        # First what dead or stopped workers had taken, then what nobody took yet.
        start = "0-0"
        while True:
            start, claimed, _ = await redis.xautoclaim(stream, group, me, min_idle_time=0, start_id=start, count=500)
            for entry_id, fields in claimed:
                await sink(fields.get(DATA, b""))
                await redis.xack(stream, group, entry_id)
                moved += 1
            if text(start) == "0-0":
                break
        while True:
            batch = await redis.xreadgroup(group, me, {stream: ">"}, count=500)
            entries = batch[0][1] if batch else []
            if not entries:
                break
            for entry_id, fields in entries:
                await sink(fields.get(DATA, b""))
                await redis.xack(stream, group, entry_id)
                moved += 1
        await redis.xgroup_delconsumer(stream, group, me)
        return moved
