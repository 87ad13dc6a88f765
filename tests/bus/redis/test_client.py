"""The Redis client on a real redis-server: what one event-loop turn sends, and in how many round trips."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from sandbox.bus.redis.client import DATA, RedisClient, id_key, text
from sandbox.protocol import (
    REDIS_RESPONSE_TTL_S,
    REDIS_RESPONSES_STREAM,
    Response,
    redis_group,
    redis_response_key,
    redis_stream,
)
from tests.conftest import settings_for
from tests.procs import unique_agent


@pytest.fixture
async def client(request: pytest.FixtureRequest) -> AsyncIterator[RedisClient]:
    client = RedisClient(settings_for("redis", request))
    await client.connect()
    try:
        yield client
    finally:
        await client.close()


async def calls(client: RedisClient, command: str) -> int:
    return int((await client.redis.info("commandstats")).get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_answers_and_acks_of_one_loop_turn_share_one_script_call(client: RedisClient) -> None:
    agent = unique_agent()
    stream, group = redis_stream(agent), redis_group(agent)
    await client.ensure_group(agent)
    warm = text(await client.redis.xadd(stream, {DATA: b"{}"}))  # the first call loads the script
    await client.redis.xreadgroup(group, "w1", {stream: ">"}, count=1)
    await client.settle(stream, group, warm, Response(task_id=f"{agent}-warm", status="success"))
    ids = [text(await client.redis.xadd(stream, {DATA: b"{}"})) for _ in range(20)]
    await client.redis.xreadgroup(group, "w1", {stream: ">"}, count=20)
    responses = [Response(task_id=f"{agent}-{i}", status="success", result=i) for i in range(20)]
    before = await calls(client, "evalsha") + await calls(client, "eval")
    published: list[bytes] = []
    async with client.redis.pubsub() as pubsub:
        await pubsub.psubscribe(f"{redis_response_key(agent)}-*")
        await asyncio.gather(*[client.settle(stream, group, entry_id, r) for entry_id, r in zip(ids, responses)])
        assert await calls(client, "evalsha") + await calls(client, "eval") - before == 1
        async with asyncio.timeout(30):  # a bound on a hang, not a speed check
            async for message in pubsub.listen():
                if message["type"] in (b"pmessage", "pmessage"):
                    published.append(message["data"])
                    if len(published) == len(responses):
                        break
    assert published == [r.encode() for r in responses]
    assert (await client.redis.xpending(stream, group))["pending"] == 0
    for response in responses:
        assert await client.redis.get(redis_response_key(response.task_id)) == response.encode()
        assert 0 < await client.redis.ttl(redis_response_key(response.task_id)) <= REDIS_RESPONSE_TTL_S
    kept = [f[DATA] for _, f in await client.redis.xrevrange(REDIS_RESPONSES_STREAM, count=1000)]
    assert all(r.encode() in kept for r in responses)  # the capped copy `watch --last N` replays


async def test_answers_go_out_again_after_redis_forgot_the_script(client: RedisClient) -> None:
    agent = unique_agent()
    stream, group = redis_stream(agent), redis_group(agent)
    await client.ensure_group(agent)
    for round_ in range(2):
        entry_id = text(await client.redis.xadd(stream, {DATA: b"{}"}))
        await client.redis.xreadgroup(group, "w1", {stream: ">"}, count=1)
        await client.settle(stream, group, entry_id, Response(task_id=f"{agent}-{round_}", status="success"))
        await client.redis.script_flush()  # as a restarted redis-server without the script cache
    assert (await client.redis.xpending(stream, group))["pending"] == 0
    assert await client.redis.exists(redis_response_key(f"{agent}-1")) == 1


async def test_publishes_of_one_loop_turn_share_one_pipeline_outside_a_transaction(client: RedisClient) -> None:
    stream = redis_stream(unique_agent())
    before = await calls(client, "exec")
    await asyncio.gather(*[client.pipelined(lambda pipe, i=i: pipe.xadd(stream, {DATA: str(i).encode()})) for i in range(10)])
    assert await calls(client, "exec") == before  # no MULTI/EXEC for plain publishes
    assert [f[DATA] for _, f in await client.redis.xrange(stream)] == [str(i).encode() for i in range(10)]


def test_stream_ids_sort_by_time_then_sequence() -> None:
    assert sorted(["10-2", "9-5", "10-10"], key=id_key) == ["9-5", "10-2", "10-10"]
    assert id_key("7") == (7, 0)
