"""The worker side of the Redis backend: read an agent's stream, answer each task, acknowledge, reclaim.

Built on the RedisClient alone (client.py), never on the bus.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from sandbox.bus.base import BusUnavailable, Handler
from sandbox.bus.delivery import RetryPolicy, answer, publish_until_stopped, room
from sandbox.bus.reconnect import Backoff
from sandbox.bus.redis.client import DATA, LOST, RedisClient, id_key, log, text
from sandbox.protocol import REDIS_DLQ, DecodeError, decode_task, redis_group, redis_stream

TASK_HISTORY_S = 120  # acknowledged tasks stay this long, for `watch --last N`
TRIM_EVERY_S = 10.0
BLOCK_MS = 500  # how long one XREADGROUP waits: bounds how fast `stop` is seen
# Not answered before stopping: the entry stays pending and a live worker reclaims it.
RETRY = RetryPolicy("Redis", (*LOST, BusUnavailable), "it stays pending for another worker", log, most=2.0)


class StreamConsumer:
    """One worker's loop on one agent's stream: read, handle, answer, acknowledge."""

    def __init__(self, client: RedisClient, agent: str, consumer: str, handler: Handler, concurrency: int):
        self.client = client
        self.agent = agent
        self.stream = redis_stream(agent)
        self.group = redis_group(agent)
        self.consumer = consumer
        self.handler = handler
        self.concurrency = max(1, concurrency)
        self.inflight: dict[str, asyncio.Task[None]] = {}
        self.settings = client.settings
        self._next_claim = 0.0
        self._next_refresh = 0.0
        self._next_trim = 0.0
        self.stop = asyncio.Event()
        self.suspects: deque[str] = deque()  # entry ids taken over, waiting to run alone

    @property
    def redis(self) -> aioredis.Redis:
        return self.client.redis

    async def run(self, stop: asyncio.Event) -> None:
        self.stop = stop
        backoff = Backoff()
        lost = False
        while not stop.is_set():
            try:
                await self.client.ensure_group(self.agent)
                # Show up in XINFO CONSUMERS (and `status`) before the first task arrives.
                await self.redis.xgroup_createconsumer(self.stream, self.group, self.consumer)
                if lost:
                    log.warning("reconnected to Redis at %s; consuming %s again", self.client.url, self.stream)
                    lost = False
                    backoff.reset()
                    self._after_outage()
                await self._loop(stop)
            except (*LOST, BusUnavailable) as exc:
                lost = True
                log.warning("lost Redis (%s); reconnecting in %.1fs", exc or type(exc).__name__, backoff.delay)
                await backoff.sleep_or(stop)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # The stream or group vanished (a broker restarted without its data, or someone
                # deleted the key): create them again rather than crash.
                log.warning("consumer group %s is gone (%s); creating it again", self.group, exc)
                await backoff.sleep_or(stop)
            else:
                backoff.reset()
        await self._finish_inflight()

    def _after_outage(self) -> None:
        """Every pending entry aged during the outage, the live workers' too.

        Refresh ours at once, and reclaim others' only after they had as long
        to come back and refresh theirs: a task still being answered by a
        live worker is not taken from it and redone.
        """
        self._next_refresh = 0.0
        self._next_claim = time.monotonic() + self.settings.claim_idle_ms / 1000.0 + Backoff().most

    async def _loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._housekeeping()
            if self.suspects:  # nothing new is read until every suspect had its turn alone
                await self._run_suspect_alone()
                if self.inflight:
                    await asyncio.wait(self.inflight.values(), return_when=asyncio.FIRST_COMPLETED, timeout=BLOCK_MS / 1000)
                continue
            free = await room(self.concurrency, self.inflight)
            if free <= 0:
                await asyncio.wait(self.inflight.values(), return_when=asyncio.FIRST_COMPLETED, timeout=BLOCK_MS / 1000)
                continue
            batch = await self.redis.xreadgroup(
                self.group, self.consumer, {self.stream: ">"}, count=free, block=BLOCK_MS
            )
            for _, entries in batch or []:
                for entry_id, fields in entries:
                    self._start(text(entry_id), fields, 1)

    async def _run_suspect_alone(self) -> None:
        """Reclaimed entries run one at a time with nothing beside them.

        Their worker died while they were in flight; one of them may be what
        killed it. They were taken over with JUSTID, which leaves Redis'
        delivery counter alone; each is claimed for real (counter + 1) only
        when its turn comes. So a task that crashes workers counts only its
        own deliveries up and is given up after max_deliveries, while the
        tasks that merely shared its worker are answered instead of being
        charged for its crashes.
        """
        if self.inflight:
            return
        entry_id = self.suspects.popleft()
        claimed = await self.redis.xclaim(self.stream, self.group, self.consumer, 0, [entry_id])
        entries = [(e, f) for e, f in claimed if f is not None]
        if not entries:  # deleted meanwhile (e.g. trimmed): nothing left to answer
            await self.redis.xack(self.stream, self.group, entry_id)
            return
        info = await self.redis.xpending_range(self.stream, self.group, min=entry_id, max=entry_id, count=1)
        count = int(info[0]["times_delivered"]) if info else 2
        log.info("redelivering task entry %s alone (delivery %d)", entry_id, count)
        self._start(entry_id, entries[0][1], count)

    def _start(self, entry_id: str, fields: dict[bytes, bytes], delivery_count: int) -> None:
        task = asyncio.create_task(self._handle(entry_id, fields, delivery_count))
        self.inflight[entry_id] = task
        task.add_done_callback(lambda _t, key=entry_id: self.inflight.pop(key, None))

    async def _handle(self, entry_id: str, fields: dict[bytes, bytes] | None, delivery_count: int) -> None:
        fields = fields or {}
        raw = fields.get(DATA)
        try:
            if raw is None:
                raise DecodeError("stream entry has no 'data' field")
            task = decode_task(raw)
        except DecodeError as exc:
            # The bytes as they came (also an empty message); the whole entry when it has no 'data'.
            kept = raw if raw is not None else orjson.dumps(
                {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()})
            await self._dead(entry_id, kept, str(exc), delivery_count)
            return
        response, dead = await answer(self.handler, task, delivery_count, self.settings.max_deliveries)

        letter = (raw, dead, response.delivery_count or delivery_count) if dead else None

        async def finish() -> None:
            await self.client.settle(self.stream, self.group, entry_id, response, letter)

        await publish_until_stopped(finish, f"task {task.task_id}", self.stop, RETRY)

    async def _dead(self, entry_id: str, raw: bytes, reason: str, delivery_count: int) -> None:
        log.warning("message %s on %s sent to %s: %s", entry_id, self.stream, REDIS_DLQ, reason)

        async def send() -> None:
            await self.client.settle(self.stream, self.group, entry_id, None, (raw, reason, delivery_count))

        await publish_until_stopped(send, f"message {entry_id}", self.stop, RETRY)

    async def _housekeeping(self) -> None:
        now = time.monotonic()
        idle_s = self.settings.claim_idle_ms / 1000.0
        if now >= self._next_refresh and (self.inflight or self.suspects):
            # Keep our own pending entries young so nobody reclaims a long task.
            await self.redis.xclaim(
                self.stream, self.group, self.consumer, 0,
                [*self.inflight, *self.suspects], justid=True,
            )
            self._next_refresh = now + idle_s / 3
        if now >= self._next_claim:
            await self._reclaim()
            self._next_claim = now + idle_s / 2
        if now >= self._next_trim:
            await trim_stream(self.redis, self.stream)
            self._next_trim = now + TRIM_EVERY_S

    async def _reclaim(self) -> None:
        """Take over entries that a dead consumer left pending (JUSTID: not counted as a delivery yet)."""
        free = self.concurrency - len(self.inflight)
        if free <= 0 or self.suspects:
            return
        # With JUSTID redis-py returns the claimed ids only.
        claimed = await self.redis.xautoclaim(
            self.stream, self.group, self.consumer, min_idle_time=self.settings.claim_idle_ms, count=free,
            justid=True,
        )
        for entry_id in claimed:
            entry_id = text(entry_id)
            if entry_id in self.inflight:  # ours, still being answered (e.g. after an outage)
                continue
            self.suspects.append(entry_id)
        if self.suspects:
            log.info("took over %d task entr(ies) of a stopped or dead worker; each runs alone", len(self.suspects))

    async def _finish_inflight(self) -> None:
        if self.inflight:
            log.info("finishing %d in-flight task(s) before stopping", len(self.inflight))
            await asyncio.gather(*self.inflight.values(), return_exceptions=True)
        try:  # leave the group cleanly: nothing of ours is pending any more
            pending = await self.redis.xpending_range(self.stream, self.group, "-", "+", 1, consumername=self.consumer)
            if not pending:
                await self.redis.xgroup_delconsumer(self.stream, self.group, self.consumer)
        except (RedisError, OSError, BusUnavailable):
            pass


async def trim_stream(client: aioredis.Redis, stream: str) -> None:
    """Drop entries every group has acknowledged, keeping a short history for `watch`."""
    groups = await client.xinfo_groups(stream)
    if not groups:
        return
    floor = id_key(f"{int((time.time() - TASK_HISTORY_S) * 1000)}-0")
    for group in groups:
        floor = min(floor, id_key(text(group.get("last-delivered-id") or "0-0")))
        if int(group.get("pending") or 0):
            oldest = await client.xpending_range(stream, text(group["name"]), "-", "+", 1)
            if oldest:
                floor = min(floor, id_key(text(oldest[0]["message_id"])))
    if floor > (0, 0):
        await client.xtrim(stream, minid=f"{floor[0]}-{floor[1]}", approximate=True)
