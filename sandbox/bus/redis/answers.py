"""A worker's answers and acknowledgements of one event-loop turn, in one atomic script call.

Per answered task the worker writes the response key (SETEX), publishes it, copies it to the
capped responses stream and acknowledges the task entry. As a MULTI/EXEC that is five replies
per task for redis-py to parse (four QUEUED and its share of EXEC), each under its own read
timeout: most of a Redis worker's CPU. One Lua script per turn does the same commands on the
server, as atomically as MULTI/EXEC (a worker that dies half-way leaves neither an answer
without its XACK nor an XACK without its answer), with one reply for the whole batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

SETTLE = """
-- KEYS[1] task stream, KEYS[2] responses stream, KEYS[3..] response keys (one per answer)
-- ARGV[1] group, ARGV[2] response ttl, ARGV[3] responses kept, ARGV[4..] per answer: raw, entry id
local n = #KEYS - 2
for i = 1, n do
  local raw = ARGV[2 + 2 * i]
  redis.call('SET', KEYS[2 + i], raw, 'EX', ARGV[2])
  redis.call('PUBLISH', KEYS[2 + i], raw)
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'data', raw)
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[3 + 2 * i])
end
return n
"""

Answer = tuple[str, bytes, str]  # response key, encoded response, entry id


class AnswerBatch:
    """Answers queued in one loop turn, sent per (stream, group) as one script call in the next."""

    def __init__(self, redis: Callable[[], Any], responses_stream: str, ttl_s: int, kept: int):
        self._redis = redis  # the client's connection, looked up at flush time (it reconnects)
        self._fixed = (responses_stream, ttl_s, kept)
        self._script: Any = None
        self._script_of: Any = None  # the connection the script was registered on
        self._queued: dict[tuple[str, str], list[tuple[Answer, asyncio.Future[None]]]] = {}
        self._flushes: set[asyncio.Task[None]] = set()  # strong refs: the loop keeps only weak ones

    async def settle(self, stream: str, group: str, answer: Answer) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self._queued:
            asyncio.get_running_loop().call_soon(self._start_flush)
        self._queued.setdefault((stream, group), []).append((answer, fut))
        await fut

    def _start_flush(self) -> None:
        queued, self._queued = self._queued, {}
        for (stream, group), batch in queued.items():
            task = asyncio.ensure_future(self._flush(stream, group, batch))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    async def _flush(self, stream: str, group: str, batch: list[tuple[Answer, asyncio.Future[None]]]) -> None:
        responses_stream, ttl_s, kept = self._fixed
        keys: list[Any] = [stream, responses_stream]
        args: list[Any] = [group, ttl_s, kept]
        for (key, raw, entry_id), _ in batch:
            keys.append(key)
            args += (raw, entry_id)
        try:
            redis = self._redis()
            if self._script is None or self._script_of is not redis:
                self._script, self._script_of = redis.register_script(SETTLE), redis
            await self._script(keys=keys, args=args)  # EVALSHA, loaded again after a Redis restart
        except BaseException as exc:
            settle_all(batch, exc)
            return
        settle_all(batch, None)


def settle_all(batch: list[tuple[Any, asyncio.Future[None]]], error: BaseException | None) -> None:
    """Every waiter of a batch learns how its batch went (once: a cancelled waiter is left alone)."""
    for _, fut in batch:
        if not fut.done():
            if error is None:
                fut.set_result(None)
            else:
                fut.set_exception(error)
