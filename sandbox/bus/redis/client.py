"""The Redis connection both sides share: one pool, pipelined batching, the answer+ack transaction.

The bus (bus.py) and the worker's consumer (consumer.py) each hold one of these;
neither reaches into the other.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sandbox.bus.base import BusNotConnected, BusUnavailable, translate_errors
from sandbox.bus.redis.answers import AnswerBatch, settle_all
from sandbox.config import Settings
from sandbox.protocol import REDIS_DLQ, REDIS_RESPONSE_TTL_S, REDIS_RESPONSES_STREAM, Response, redis_group, redis_response_key, redis_stream

log = logging.getLogger("sandbox.bus.redis")

DATA = b"data"
RESPONSES_KEPT = 10_000  # capped history of responses, for `watch --last N`
DLQ_KEPT = 100_000
POOL_SIZE = 64  # connections; more concurrent commands queue for a free one

# What "the broker is not there (right now)" looks like from redis-py; a
# BusyLoadingError (Redis still reading its AOF after a restart) is one too.
LOST = (RedisConnectionError, RedisTimeoutError, OSError)


def text(value: Any) -> str:
    """A reply as str: redis-py answers bytes (decode_responses=False)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def id_key(entry_id: str) -> tuple[int, int]:
    """A stream entry id as a sortable (ms, seq)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _lost(owner: Any, exc: Exception) -> BusUnavailable | None:
    if isinstance(exc, LOST):
        return BusUnavailable(f"lost Redis at {owner.url}: {exc or type(exc).__name__}")
    return None


# A lost connection becomes BusUnavailable, the one error callers handle (the API: 503).
# For methods of objects with a `url`: the client, the bus, the inspector.
unavailable = translate_errors(_lost)


def queue_response(pipe: Any, response: Response) -> None:
    raw = response.encode()
    key = redis_response_key(response.task_id)
    pipe.set(key, raw, ex=REDIS_RESPONSE_TTL_S)  # SETEX on the wire
    pipe.publish(key, raw)
    pipe.xadd(REDIS_RESPONSES_STREAM, {DATA: raw}, maxlen=RESPONSES_KEPT, approximate=True)


def queue_dead_letter(pipe: Any, source: str, raw: bytes, reason: str, delivery_count: int) -> None:
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


class RedisClient:
    """One connection pool, and commands of one event-loop turn sent as one pipeline."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.url = settings.redis_url
        self._redis: aioredis.Redis | None = None
        # per transaction flag: (queue fn, done) waiting for the next flush
        self._batch: dict[bool, list[tuple[Any, asyncio.Future[None]]]] = {False: [], True: []}
        self._flushing = {False: False, True: False}
        self._flushes: set[asyncio.Task[None]] = set()  # strong refs: the loop keeps only weak ones
        self._answers = AnswerBatch(lambda: self.redis, REDIS_RESPONSES_STREAM, REDIS_RESPONSE_TTL_S, RESPONSES_KEPT)

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise BusNotConnected("the Redis bus is not connected (call connect() first)")
        return self._redis

    @property
    def connected(self) -> bool:
        return self._redis is not None

    async def connect(self) -> None:
        if self._redis is not None:
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
        self._redis = client

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (RedisError, OSError, BusUnavailable):
            return False

    async def ensure_group(self, agent: str) -> None:
        try:
            await self.redis.xgroup_create(redis_stream(agent), redis_group(agent), id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # -- pipelining ------------------------------------------------------------
    async def pipelined(self, queue: Any, transaction: bool = False) -> None:
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
        pipe = self.redis.pipeline(transaction=transaction)
        for queue, _ in batch:
            queue(pipe)
        try:
            await pipe.execute()
        except BaseException as exc:
            settle_all(batch, exc)
            return
        settle_all(batch, None)

    # -- answers -----------------------------------------------------------------
    @unavailable
    async def publish_response(self, response: Response) -> None:
        pipe = self.redis.pipeline(transaction=False)
        queue_response(pipe, response)
        await pipe.execute()

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
        without its response (which would be lost). Plain answers go as one script
        call per loop turn (answers.py); with a dead letter, as MULTI/EXEC.
        """
        if dead is None and response is not None:
            answer = (redis_response_key(response.task_id), response.encode(), entry_id)
            await self._answers.settle(stream, group, answer)
            return

        def queue(pipe: Any) -> None:
            if dead is not None:
                queue_dead_letter(pipe, stream, *dead)
            if response is not None:
                queue_response(pipe, response)
            pipe.xack(stream, group, entry_id)

        await self.pipelined(queue, transaction=True)
