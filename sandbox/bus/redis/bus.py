"""RedisBus: the Bus interface on Redis streams with consumer groups, responses by SETEX + PUBLISH.

Beyond Laddr 0.9.6: tasks are acknowledged after the response is out (not on
read), pending entries of dead consumers are reclaimed with XAUTOCLAIM, live
workers keep theirs fresh so long tasks are not stolen, and acknowledged
entries are trimmed only once every group is past them (consumer.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from redis.exceptions import RedisError

from sandbox.bus.base import Bus, BusUnavailable, Handler
from sandbox.bus.delivery import check_size
from sandbox.bus.reconnect import Backoff
from sandbox.bus.redis.client import DATA, RedisClient, log, text, unavailable
from sandbox.bus.redis.consumer import StreamConsumer
from sandbox.bus.redis.inspect import RedisInspector
from sandbox.config import Settings
from sandbox.protocol import (
    REDIS_REGISTRY,
    REDIS_RESPONSE_PREFIX,
    AgentInfo,
    DecodeError,
    Response,
    decode_response,
    redis_response_key,
    redis_stream,
)

LISTEN_WAIT_S = 10.0  # how long a request waits for the response subscription


class RedisBus(Bus):
    backend = "redis"

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.url = settings.redis_url
        self.client = RedisClient(settings)
        self.inspector = RedisInspector(self.client)  # stats, tap, dead letters, drain

    # -- lifecycle ---------------------------------------------------------
    async def connect(self) -> None:
        await self.client.connect()

    async def close(self) -> None:
        await self._stop_listener()
        await self.client.close()

    async def ping(self) -> bool:
        return await self.client.ping()

    @unavailable
    async def ensure_topology(self, agents: Iterable[str], partitions: int | None = None) -> None:
        for agent in agents:
            await self.client.ensure_group(agent)

    async def channels(self) -> list[str]:
        return await self.inspector.channels()

    # -- tasks and responses -------------------------------------------------
    @unavailable
    async def publish_raw(self, agent: str, raw: bytes, *, key: str | None = None) -> None:
        check_size(raw)
        stream = redis_stream(agent)
        await self.client.pipelined(lambda pipe: pipe.xadd(stream, {DATA: raw}))

    async def publish_response(self, response: Response) -> None:
        await self.client.publish_response(response)

    @unavailable
    async def get_response(self, task_id: str) -> Response | None:
        raw = await self.client.redis.get(redis_response_key(task_id))
        if raw is None:
            return None
        try:
            # Laddr's WorkerRunner stores its handler's result as it is: the key names the task
            return decode_response(raw, task_id)
        except DecodeError:
            return None

    async def follow_responses(self) -> None:
        """One pattern subscription per client, not one per request."""
        if self._listening.is_set() and self._listener is not None and not self._listener.done():
            return  # following already: no wait_for (a task) per request
        self._start_listener()
        try:
            await asyncio.wait_for(self._listening.wait(), LISTEN_WAIT_S)
        except asyncio.TimeoutError:
            raise BusUnavailable(f"cannot subscribe to responses on Redis at {self.url}") from None

    async def _listen(self) -> None:
        backoff = Backoff()
        lost = False
        while True:
            pubsub = self.client.redis.pubsub()
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
                            self._deliver(message["data"], task_id)
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

    def _deliver(self, raw: bytes, task_id: str) -> None:
        try:
            self._waiters.resolve(decode_response(raw, task_id))
        except DecodeError:
            log.debug("ignoring an undecodable response on pub/sub")

    # -- consuming ---------------------------------------------------------
    def consumer_for(self, agent: str, name: str, handler: Handler, concurrency: int) -> StreamConsumer:
        return StreamConsumer(self.client, agent, name, handler, concurrency)

    # -- registry ------------------------------------------------------------
    @unavailable
    async def register_agent(self, info: AgentInfo) -> None:
        await self.client.redis.hset(REDIS_REGISTRY, info.name, info.to_json())

    @unavailable
    async def agents(self) -> dict[str, AgentInfo]:
        entries = await self.client.redis.hgetall(REDIS_REGISTRY)
        found: dict[str, AgentInfo] = {}
        for name, raw in entries.items():
            try:
                found[text(name)] = AgentInfo.from_json(text(name), raw)
            except DecodeError:
                log.warning("registry entry %r is not JSON; ignored", text(name))
        return dict(sorted(found.items()))
