"""The Redis backend: streams with consumer groups, responses by SETEX + PUBLISH.

Beyond Laddr 0.9.6: tasks are acknowledged after the response is out (not on
read), pending entries of dead consumers are reclaimed with XAUTOCLAIM, live
workers keep theirs fresh so long tasks are not stolen, and acknowledged
entries are trimmed only once every group is past them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sandbox.bus.base import Bus, BusUnavailable, ConsumerInfo, DeadLetter, Handler, QueueStats, TapMessage
from sandbox.bus.common import Backoff, ResponseWaiters, check_size, describe_message
from sandbox.config import Settings
from sandbox.protocol import (
    REDIS_DLQ,
    REDIS_REGISTRY,
    REDIS_RESPONSE_PREFIX,
    REDIS_RESPONSE_TTL_S,
    REDIS_RESPONSES_STREAM,
    REDIS_TASKS_PREFIX,
    AgentInfo,
    DecodeError,
    Response,
    Task,
    decode_response,
    redis_group,
    redis_response_key,
    redis_stream,
)

log = logging.getLogger("sandbox.bus.redis")

DATA = b"data"
RESPONSES_KEPT = 10_000  # capped history of responses, for `watch --last N`
DLQ_KEPT = 100_000
TASK_HISTORY_S = 120  # acknowledged tasks stay this long, for `watch --last N`
TRIM_EVERY_S = 10.0
BLOCK_MS = 500  # how long one XREADGROUP waits: bounds how fast `stop` is seen
POOL_SIZE = 64  # connections; more concurrent commands queue for a free one


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# What "the broker is not there (right now)" looks like from redis-py; a
# BusyLoadingError (Redis still reading its AOF after a restart) is one too.
LOST = (RedisConnectionError, RedisTimeoutError, OSError)
LISTEN_WAIT_S = 10.0  # how long a request waits for the response subscription
GIVE_UP_AFTER_STOP_S = 10.0  # a stopping worker stops retrying an answer after this


def _unavailable(fn):  # type: ignore[no-untyped-def]
    """Turn a lost connection into BusUnavailable, the one error callers handle (the API: 503)."""

    @functools.wraps(fn)
    async def guarded(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return await fn(self, *args, **kwargs)
        except LOST as exc:
            raise BusUnavailable(f"lost Redis at {self.url}: {exc or type(exc).__name__}") from None

    return guarded


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class RedisBus(Bus):
    backend = "redis"

    def __init__(self, settings: Settings):
        super().__init__()
        self.settings = settings
        self.url = settings.redis_url
        self._client: aioredis.Redis | None = None
        self._waiters = ResponseWaiters()
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        # per transaction flag: (queue fn, done) waiting for the next flush
        self._batch: dict[bool, list[tuple[Any, asyncio.Future[None]]]] = {False: [], True: []}
        self._flushing = {False: False, True: False}
        self._flushes: set[asyncio.Task[None]] = set()  # strong refs: the loop keeps only weak ones

    async def _pipelined(self, queue: Any, transaction: bool = False) -> None:
        """Run `queue(pipe)` in a pipeline shared with every other call made in the same loop turn.

        Many tasks finishing together then cost one round trip (and one
        MULTI/EXEC for their answers and acknowledgements) instead of one each.
        """
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._batch[transaction].append((queue, fut))
        if not self._flushing[transaction]:
            self._flushing[transaction] = True
            asyncio.get_running_loop().call_soon(self._start_flush, transaction)
        await fut

    def _start_flush(self, transaction: bool) -> None:
        task = asyncio.ensure_future(self._flush(transaction))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self, transaction: bool) -> None:
        batch, self._batch[transaction] = self._batch[transaction], []
        self._flushing[transaction] = False
        pipe = self.client.pipeline(transaction=transaction)
        for queue, _ in batch:
            queue(pipe)
        try:
            await pipe.execute()
        except BaseException as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for _, fut in batch:
            if not fut.done():
                fut.set_result(None)

    # -- lifecycle ---------------------------------------------------------
    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise BusUnavailable("the Redis bus is not connected (call connect() first)")
        return self._client

    async def connect(self) -> None:
        if self._client is not None:
            return
        # A blocking pool: thousands of concurrent requests queue for a
        # connection instead of failing with "Too many connections".
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url, max_connections=POOL_SIZE, timeout=None, health_check_interval=30
        )
        client = aioredis.Redis(connection_pool=pool, decode_responses=False)
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            await client.aclose()
            raise BusUnavailable(f"cannot reach Redis at {self.url}: {exc}") from None
        self._client = client

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        self._waiters.fail_all(BusUnavailable("the bus was closed"))
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except (RedisError, OSError, BusUnavailable):
            return False

    @_unavailable
    async def ensure_topology(self, agents: Iterable[str], partitions: int | None = None) -> None:
        for agent in agents:
            await self._ensure_group(agent)

    async def _ensure_group(self, agent: str) -> None:
        try:
            await self.client.xgroup_create(redis_stream(agent), redis_group(agent), id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    @_unavailable
    async def channels(self) -> list[str]:
        names = [_s(k) async for k in self.client.scan_iter(match=f"{REDIS_TASKS_PREFIX}*", _type="stream", count=10_000)]
        return sorted(names)

    # -- tasks and responses -------------------------------------------------
    @_unavailable
    async def publish_task(self, agent: str, payload: Any, *, task_id: str | None = None) -> Task:
        task = Task(agent_name=agent, payload=payload)
        if task_id:
            task.task_id = task_id
        await self.publish_raw(agent, task.encode())
        return task

    @_unavailable
    async def publish_raw(self, agent: str, raw: bytes, *, key: str | None = None) -> None:
        check_size(raw)
        stream = redis_stream(agent)
        await self._pipelined(lambda pipe: pipe.xadd(stream, {DATA: raw}))

    @_unavailable
    async def publish_response(self, response: Response) -> None:
        pipe = self.client.pipeline(transaction=False)
        self._queue_response(pipe, response)
        await pipe.execute()

    @staticmethod
    def _queue_response(pipe: Any, response: Response) -> None:
        raw = response.encode()
        key = redis_response_key(response.task_id)
        pipe.set(key, raw, ex=REDIS_RESPONSE_TTL_S)  # SETEX on the wire
        pipe.publish(key, raw)
        pipe.xadd(REDIS_RESPONSES_STREAM, {DATA: raw}, maxlen=RESPONSES_KEPT, approximate=True)

    @staticmethod
    def _queue_dead_letter(pipe: Any, source: str, raw: bytes, reason: str, delivery_count: int) -> None:
        pipe.xadd(
            REDIS_DLQ,
            {
                DATA: raw,
                b"reason": reason.encode(),
                b"source": source.encode(),
                b"delivery_count": str(delivery_count).encode(),
                b"ts": repr(time.time()).encode(),
            },
            maxlen=DLQ_KEPT,
            approximate=True,
        )

    async def settle(
        self,
        stream: str,
        group: str,
        entry_id: str,
        response: Response | None,
        dead: tuple[bytes, str, int] | None = None,
    ) -> None:
        """Answer (and/or dead-letter) a task and acknowledge it in one MULTI/EXEC.

        All or nothing: a worker that dies half-way leaves neither a response
        without its XACK (which would be redone and answered twice) nor an XACK
        without its response (which would be lost).
        """
        def queue(pipe: Any) -> None:
            if dead is not None:
                self._queue_dead_letter(pipe, stream, *dead)
            if response is not None:
                self._queue_response(pipe, response)
            pipe.xack(stream, group, entry_id)

        await self._pipelined(queue, transaction=True)

    async def _expect(self, task_id: str) -> asyncio.Future[Response]:
        await self._ensure_listener()
        return self._waiters.add(task_id)

    def _forget(self, task_id: str) -> None:
        self._waiters.discard(task_id)

    @_unavailable
    async def wait_for_response(self, task_id: str, timeout: float) -> Response:
        waiter = await self._expect(task_id)
        try:
            stored = await self.get_response(task_id)
            if stored is not None:
                return stored
            return await self._await_response(waiter, task_id, "?", timeout)
        finally:
            self._forget(task_id)

    @_unavailable
    async def get_response(self, task_id: str) -> Response | None:
        raw = await self.client.get(redis_response_key(task_id))
        if raw is None:
            return None
        try:
            return decode_response(raw)
        except DecodeError:
            return None

    async def _ensure_listener(self) -> None:
        """One pattern subscription per client, not one per request."""
        if self._listener is None or self._listener.done():
            self._listening.clear()
            self._listener = asyncio.create_task(self._listen(), name="redis-response-listener")
        try:
            await asyncio.wait_for(self._listening.wait(), LISTEN_WAIT_S)
        except asyncio.TimeoutError:
            raise BusUnavailable(f"cannot subscribe to responses on Redis at {self.url}") from None

    async def _listen(self) -> None:
        backoff = Backoff()
        lost = False
        while True:
            pubsub = self.client.pubsub()
            try:
                await pubsub.psubscribe(f"{REDIS_RESPONSE_PREFIX}*")
                async for message in pubsub.listen():
                    kind = message["type"]
                    if kind == b"psubscribe" or kind == "psubscribe":
                        if lost:
                            log.warning("response listener reconnected to Redis at %s", self.url)
                            lost = False
                        self._listening.set()
                        backoff.reset()
                        # Responses published while we were away are still in their keys.
                        await self._catch_up()
                    elif kind in (b"pmessage", "pmessage"):
                        channel = message["channel"]
                        task_id = (channel.decode() if isinstance(channel, bytes) else channel)[len(REDIS_RESPONSE_PREFIX):]
                        if self._waiters.waiting(task_id):
                            self._deliver(message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, BusUnavailable) as exc:
                lost = True
                log.warning("response listener lost Redis (%s); reconnecting in %.1fs", exc, backoff.delay)
                await backoff.sleep()
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()

    async def _catch_up(self) -> None:
        for task_id in self._waiters.ids():
            response = await self.get_response(task_id)
            if response is not None:
                self._waiters.resolve(response)

    def _deliver(self, raw: bytes) -> None:
        try:
            self._waiters.resolve(decode_response(raw))
        except DecodeError:
            log.debug("ignoring an undecodable response on pub/sub")

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
        from sandbox.bus.redis_worker import StreamConsumer  # here, not at the top: that module builds on this one

        await StreamConsumer(self, agent, consumer, handler, concurrency).run(stop)

    @_unavailable
    async def dead_letter(self, source: str, raw: bytes, reason: str, delivery_count: int) -> None:
        pipe = self.client.pipeline(transaction=False)
        self._queue_dead_letter(pipe, source, raw, reason, delivery_count)
        await pipe.execute()

    # -- registry ------------------------------------------------------------
    @_unavailable
    async def register_agent(self, info: AgentInfo) -> None:
        await self.client.hset(REDIS_REGISTRY, info.name, info.to_json())

    @_unavailable
    async def agents(self) -> dict[str, AgentInfo]:
        entries = await self.client.hgetall(REDIS_REGISTRY)
        found: dict[str, AgentInfo] = {}
        for name, raw in entries.items():
            try:
                found[_s(name)] = AgentInfo.from_json(_s(name), raw)
            except DecodeError:
                log.warning("registry entry %r is not JSON; ignored", _s(name))
        return dict(sorted(found.items()))

    # -- inspection ----------------------------------------------------------
    @_unavailable
    async def queue_stats(self, agents: Iterable[str]) -> list[QueueStats]:
        return [await self._stats(agent) for agent in agents]

    async def _stats(self, agent: str) -> QueueStats:
        stream, group = redis_stream(agent), redis_group(agent)
        stats = QueueStats(agent=agent, channel=stream)
        if not await self.client.exists(stream):
            stats.exists = False
            return stats
        stats.length = await self.client.xlen(stream)
        groups = {_s(g["name"]): g for g in await self.client.xinfo_groups(stream)}
        info = groups.get(group)
        if info is None:  # no worker ever joined: everything waits
            stats.lag = stats.length
            return stats
        stats.pending = int(info.get("pending") or 0)
        lag = info.get("lag")
        if lag is None:  # Redis cannot tell after deletions: count what is past the group
            last = _s(info.get("last-delivered-id") or "0-0")
            lag = len(await self.client.xrange(stream, min=f"({last}", max="+"))
        stats.lag = int(lag)
        for c in await self.client.xinfo_consumers(stream, group):
            stats.consumers.append(
                ConsumerInfo(name=_s(c["name"]), pending=int(c.get("pending") or 0), idle_ms=int(c.get("idle") or 0))
            )
        return stats

    async def _task_streams(self) -> list[str]:
        return await self.channels()

    async def tap(self, *, last: int = 0) -> AsyncIterator[TapMessage]:  # type: ignore[override]
        """XREAD over every task stream, the response history and the DLQ."""
        streams = [*await self._task_streams(), REDIS_RESPONSES_STREAM, REDIS_DLQ]
        positions: dict[str, str] = {}
        for name in streams:
            positions[name] = await self._last_id(name)
        if last > 0:
            for message in await self._replay(streams, last):
                yield message
        next_scan = time.monotonic() + 2.0
        backoff = Backoff()
        while True:
            try:
                if time.monotonic() >= next_scan:  # streams of agents that appeared later
                    for name in await self._task_streams():
                        positions.setdefault(name, "0-0")
                    next_scan = time.monotonic() + 2.0
                batch = await self.client.xread(positions, count=1000, block=1000)
            except (*LOST, BusUnavailable) as exc:  # go on from the same positions once Redis is back
                log.warning("tap lost Redis (%s); reconnecting in %.1fs", exc or type(exc).__name__, backoff.delay)
                await backoff.sleep()
                continue
            backoff.reset()
            for name, entries in batch or []:
                name = _s(name)
                for entry_id, fields in entries:
                    positions[name] = _s(entry_id)
                    yield self._tap_message(name, _s(entry_id), fields)

    async def _last_id(self, stream: str) -> str:
        newest = await self.client.xrevrange(stream, count=1)
        return _s(newest[0][0]) if newest else "0-0"

    async def _replay(self, streams: list[str], last: int) -> list[TapMessage]:
        found: list[tuple[tuple[int, int], TapMessage]] = []
        for name in streams:
            for entry_id, fields in await self.client.xrevrange(name, count=last):
                found.append((_id_key(_s(entry_id)), self._tap_message(name, _s(entry_id), fields)))
        found.sort(key=lambda pair: pair[0])
        return [message for _, message in found[-last:]]

    def _tap_message(self, stream: str, entry_id: str, fields: dict[bytes, bytes]) -> TapMessage:
        raw = fields.get(DATA, b"")
        kind = "response" if stream == REDIS_RESPONSES_STREAM else "dlq" if stream == REDIS_DLQ else "task"
        timestamp = _id_key(entry_id)[0] / 1000.0
        message = describe_message(stream, kind, raw, timestamp, entry_id)
        if kind == "dlq":
            message.status = "dead: " + _s(fields.get(b"reason", b""))
        return message

    @_unavailable
    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        letters = []
        for entry_id, fields in await self.client.xrevrange(REDIS_DLQ, count=limit):
            letters.append(
                DeadLetter(
                    id=_s(entry_id),
                    source=_s(fields.get(b"source", b"")),
                    reason=_s(fields.get(b"reason", b"")),
                    delivery_count=int(_s(fields.get(b"delivery_count", b"0")) or 0),
                    raw=fields.get(DATA, b""),
                    timestamp=float(_s(fields.get(b"ts", b"0")) or 0),
                )
            )
        return letters

    @_unavailable
    async def requeue_dead_letter(self, dead: DeadLetter) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.xadd(dead.source, {DATA: dead.raw})
        pipe.xdel(REDIS_DLQ, dead.id)
        await pipe.execute()

    # -- migration -----------------------------------------------------------
    @_unavailable
    async def drain_pending(self, agent: str, sink: Callable[[bytes], Awaitable[None]]) -> int:
        stream, group, me = redis_stream(agent), redis_group(agent), "laddr-sandbox-migrator"
        if not await self.client.exists(stream):
            return 0
        await self._ensure_group(agent)
        moved = 0
        # First what dead or stopped workers had taken, then what nobody took yet.
        start = "0-0"
        while True:
            start, claimed, _ = await self.client.xautoclaim(stream, group, me, min_idle_time=0, start_id=start, count=500)
            for entry_id, fields in claimed:
                await sink(fields.get(DATA, b""))
                await self.client.xack(stream, group, entry_id)
                moved += 1
            if _s(start) == "0-0":
                break
        while True:
            batch = await self.client.xreadgroup(group, me, {stream: ">"}, count=500)
            entries = batch[0][1] if batch else []
            if not entries:
                break
            for entry_id, fields in entries:
                await sink(fields.get(DATA, b""))
                await self.client.xack(stream, group, entry_id)
                moved += 1
        await self.client.xgroup_delconsumer(stream, group, me)
        return moved
