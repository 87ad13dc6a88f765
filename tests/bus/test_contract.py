"""One contract, run unchanged against real Redis and real Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace
from collections.abc import AsyncIterator

import pytest

from sandbox.bus import Bus, MessageTooLarge, RequestTimeout, TapMessage, make_bus
from sandbox.bus.delivery import MAX_MESSAGE_BYTES
from sandbox.config import Settings
from sandbox.protocol import AgentInfo, Response, Task, decode_task
from tests.procs import start_worker, unique_agent, write_agent


def echo_handler(worker: str = "w1"):
    async def handle(task: Task, delivery: int) -> Response:
        return Response(task_id=task.task_id, status="success", result={"echo": task.payload, "delivery": delivery},
                        worker_id=worker)
    return handle


@contextlib.asynccontextmanager
async def serving(bus: Bus, agent: str, handler=None, consumer: str = "w1", concurrency: int = 4) -> AsyncIterator[None]:
    await bus.ensure_topology([agent], partitions=2)
    stop = asyncio.Event()
    task = asyncio.create_task(bus.serve(agent, consumer, handler or echo_handler(consumer), concurrency=concurrency, stop=stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_round_trip(bus: Bus) -> None:
    agent = unique_agent()
    async with serving(bus, agent):
        response = await bus.request(agent, {"query": "test", "n": 1, "text": "żółw ✓"}, timeout=30)
    assert response.ok
    assert response.result == {"echo": {"query": "test", "n": 1, "text": "żółw ✓"}, "delivery": 1}
    assert response.worker_id == "w1"


async def test_many_requests_in_flight_each_get_their_own_response(bus: Bus) -> None:
    agent = unique_agent()
    async with serving(bus, agent, concurrency=16):
        responses = await asyncio.gather(*[bus.request(agent, {"i": i}, timeout=60) for i in range(300)])
    assert [r.result["echo"]["i"] for r in responses] == list(range(300))


async def test_request_times_out_with_the_task_id(bus: Bus) -> None:
    agent = unique_agent()
    await bus.ensure_topology([agent], partitions=1)
    with pytest.raises(RequestTimeout) as caught:
        await bus.request(agent, {"nobody": "listens"}, timeout=0.5)
    assert agent in str(caught.value) and caught.value.task_id


async def test_oversized_payload_is_refused_before_the_broker(bus: Bus) -> None:
    agent = unique_agent()
    with pytest.raises(MessageTooLarge, match="at most"):
        await bus.publish_task(agent, {"blob": "x" * (MAX_MESSAGE_BYTES + 1)})


async def test_undecodable_message_goes_to_the_dlq_and_the_worker_carries_on(bus: Bus) -> None:
    agent = unique_agent()
    await bus.ensure_topology([agent], partitions=1)
    await bus.publish_raw(agent, b"{this is not json")
    await bus.publish_raw(agent, b'{"task_id": "x"}')  # JSON, but not a task
    async with serving(bus, agent):
        response = await bus.request(agent, {"after": "poison"}, timeout=30)
        assert response.ok
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            mine = [d for d in await bus.dead_letters(1000) if agent in d.source]
            if len(mine) >= 2:
                break
            await asyncio.sleep(0.2)
    reasons = sorted(d.reason for d in mine)
    assert len(mine) == 2, mine
    assert any("not JSON" in r for r in reasons) and any("agent_name" in r for r in reasons)
    assert {d.raw for d in mine} == {b"{this is not json", b'{"task_id": "x"}'}


async def test_dead_letter_can_be_sent_back_to_its_queue(bus: Bus) -> None:
    agent = unique_agent()
    await bus.ensure_topology([agent], partitions=1)
    task = Task(agent_name=agent, payload={"x": 1})
    async with serving(bus, agent):
        await bus.publish_raw(agent, b"garbage")
        deadline = time.monotonic() + 20
        mine: list = []
        while not mine and time.monotonic() < deadline:
            mine = [d for d in await bus.dead_letters(1000) if agent in d.source]
            await asyncio.sleep(0.2)
        assert mine
        # Someone fixed the message; send the fixed bytes back through the DLQ path.
        mine[0].raw = task.encode()
        waiter = await bus.expect(task.task_id)
        await bus.requeue_dead_letter(mine[0])
        response = await asyncio.wait_for(waiter, 30)
    assert response.ok and response.result["echo"] == {"x": 1}


async def test_registry_survives_a_client_restart(settings: Settings) -> None:
    name = unique_agent("reg")
    first = make_bus(settings)
    await first.connect()
    await first.ensure_topology([])
    await first.register_agent(AgentInfo(name=name, role="r", goal="g", tools=["t"], last_heartbeat=123.0, worker_id="w9"))
    await first.close()
    second = make_bus(settings)
    await second.connect()
    try:
        registry = await second.agents()
    finally:
        await second.close()
    assert registry[name].role == "r" and registry[name].tools == ["t"] and registry[name].worker_id == "w9"
    assert registry[name].last_heartbeat == 123.0


async def collect(stream: AsyncIterator[TapMessage], into: list[TapMessage]) -> None:
    async for message in stream:
        into.append(message)


async def test_tap_sees_tasks_and_responses_live_and_replays_the_last_n(bus: Bus, settings: Settings) -> None:
    agent = unique_agent()
    await bus.ensure_topology([agent], partitions=1)
    seen: list[TapMessage] = []
    watcher = make_bus(settings)
    await watcher.connect()
    tap = asyncio.create_task(collect(watcher.tap(), seen))
    try:
        await asyncio.sleep(1.5)  # the tap starts at the end: give it time to get there
        async with serving(bus, agent):
            response = await bus.request(agent, {"watch": "me"}, timeout=30)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            kinds = {m.kind for m in seen if m.task_id == response.task_id}
            if kinds == {"task", "response"}:
                break
            await asyncio.sleep(0.1)
        assert kinds == {"task", "response"}, [(m.kind, m.task_id) for m in seen]
        task_seen = next(m for m in seen if m.task_id == response.task_id and m.kind == "task")
        assert task_seen.agent == agent and task_seen.doc["payload"] == {"watch": "me"}
    finally:
        tap.cancel()
        await asyncio.gather(tap, return_exceptions=True)
    replayed: list[TapMessage] = []
    replay = asyncio.create_task(collect(watcher.tap(last=50), replayed))
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any(m.task_id == response.task_id for m in replayed):
            await asyncio.sleep(0.1)
        assert any(m.task_id == response.task_id for m in replayed)
        assert len(replayed) <= 50
    finally:
        replay.cancel()
        await asyncio.gather(replay, return_exceptions=True)
        await watcher.close()


async def test_a_tap_whose_bus_is_closed_ends_instead_of_retrying(settings: Settings) -> None:
    """Closed on purpose is not a lost broker: the tap stops with BusNotConnected, it does not retry for ever."""
    from sandbox.bus import BusError
    from sandbox.bus.base import BusNotConnected

    watcher = make_bus(settings)
    await watcher.connect()
    tap = asyncio.create_task(collect(watcher.tap(), []))
    await asyncio.sleep(1.5)
    await watcher.close()
    done, _ = await asyncio.wait([tap], timeout=20)
    if not done:
        tap.cancel()
        await asyncio.gather(tap, return_exceptions=True)
    assert done, "the tap kept retrying after its bus was closed"
    assert isinstance(tap.exception(), BusNotConnected) and isinstance(tap.exception(), BusError), tap.exception()


async def test_pending_tasks_are_counted_and_drained_for_migration(bus: Bus) -> None:
    agent = unique_agent()
    await bus.ensure_topology([agent], partitions=3)
    sent = [await bus.publish_task(agent, {"i": i}) for i in range(7)]
    [stats] = await bus.queue_stats([agent])
    assert stats.waiting == 7
    moved: list[bytes] = []

    async def sink(raw: bytes) -> None:
        moved.append(raw)

    assert await bus.drain_pending(agent, sink) == 7
    assert sorted(decode_task(raw).task_id for raw in moved) == sorted(t.task_id for t in sent)
    [after] = await bus.queue_stats([agent])
    assert after.waiting == 0
    assert await bus.drain_pending(agent, sink) == 0  # nothing is moved twice


async def test_queue_stats_show_the_consumers(bus: Bus) -> None:
    agent = unique_agent()
    async with serving(bus, agent, consumer="stats-worker"):
        await bus.request(agent, {}, timeout=30)
        [stats] = await bus.queue_stats([agent])
    assert stats.exists and [c.name for c in stats.consumers] == ["stats-worker"]
    if bus.backend == "kafka":
        assert stats.partitions == 2 and stats.consumers[0].partitions == [0, 1]


async def test_a_task_taken_by_a_worker_that_dies_is_answered_by_another(settings: Settings, bus: Bus, tmp_path) -> None:
    """At-least-once: kill -9 the worker mid-task, a second worker answers it."""
    agent = unique_agent()
    write_agent(tmp_path / "agents", agent)
    await bus.ensure_topology([agent], partitions=2)
    env = {"LADDR_AGENTS_DIR": str(tmp_path / "agents"), "LADDR_CLAIM_IDLE_MS": "1000"}
    doomed = start_worker(agent, settings, tmp_path, worker_id="doomed", **env)
    survivor = None
    try:
        doomed.wait_for("serving agent", 60)
        task = await bus.publish_task(agent, {"simulate": {"delay_ms": 3000}})
        waiter = await bus.expect(task.task_id)
        doomed.wait_for(f"task {task.task_id} received", 60)
        doomed.kill()
        survivor = start_worker(agent, settings, tmp_path, worker_id="survivor", **env)
        response = await asyncio.wait_for(waiter, 90)
    finally:
        doomed.kill()
        if survivor is not None:
            assert survivor.terminate() == 0
    assert response.ok and response.worker_id == "survivor"
    assert response.result["delivery"] == 2  # the handler sees it is a redelivery


async def test_sigterm_finishes_the_task_in_hand_then_exits_0(settings: Settings, bus: Bus, tmp_path) -> None:
    agent = unique_agent()
    write_agent(tmp_path / "agents", agent)
    await bus.ensure_topology([agent], partitions=1)
    worker = start_worker(agent, settings, tmp_path, worker_id="graceful", LADDR_AGENTS_DIR=str(tmp_path / "agents"))
    try:
        worker.wait_for("serving agent", 60)
        task = await bus.publish_task(agent, {"simulate": {"delay_ms": 1500}})
        waiter = await bus.expect(task.task_id)
        worker.wait_for(f"task {task.task_id} received", 60)
        assert worker.terminate() == 0
        response = await asyncio.wait_for(waiter, 10)
    finally:
        worker.kill()
    assert response.ok and response.worker_id == "graceful"
    assert f"task {task.task_id} done success" in worker.output()
    [stats] = await bus.queue_stats([agent])
    assert stats.waiting == 0  # acknowledged before it left


async def test_a_handler_that_always_raises_is_retried_then_dead_lettered(settings: Settings) -> None:
    agent = unique_agent()
    attempts: list[int] = []

    async def broken(task: Task, delivery: int) -> Response:
        attempts.append(delivery)
        raise ValueError("the tool is down")

    bus = make_bus(replace(settings, max_deliveries=3))
    await bus.connect()
    try:
        async with serving(bus, agent, broken):
            response = await bus.request(agent, {"q": 1}, timeout=30)
            after = await bus.dead_letters(1000)
        dead = [d for d in after if d.source.endswith(agent)]
    finally:
        await bus.close()
    assert attempts == [1, 2, 3]
    assert response.status == "error" and "gave up after 3 attempt(s)" in response.error
    assert "ValueError: the tool is down" in response.error
    assert len(dead) == 1 and dead[0].delivery_count == 3 and "the tool is down" in dead[0].reason


async def test_a_task_that_crashes_every_worker_is_given_up_after_max_deliveries(settings: Settings, bus: Bus, tmp_path) -> None:
    """A poison task that kills its worker each time: bounded redeliveries, then the DLQ; the worker goes on."""
    agent = unique_agent()
    write_agent(tmp_path / "agents", agent)
    await bus.ensure_topology([agent], partitions=1)
    env = {"LADDR_AGENTS_DIR": str(tmp_path / "agents"), "LADDR_CLAIM_IDLE_MS": "500", "LADDR_MAX_DELIVERIES": "3"}
    poison = await bus.publish_task(agent, {"crash_worker": True})
    waiter = await bus.expect(poison.task_id)
    crashes = 0
    worker = None
    try:
        for attempt in range(8):  # what supervisor does: start it again after each crash
            worker = start_worker(agent, settings, tmp_path, worker_id=f"w{attempt}", **env)
            try:
                worker.popen.wait(20)
                crashes += 1
            except Exception:
                break  # it lives: the poison task is out of its way
        response = await asyncio.wait_for(waiter, 30)
        healthy = await bus.request(agent, {"fine": True}, timeout=30)
    finally:
        if worker is not None:
            worker.terminate()
    assert crashes == 3
    assert response.status == "error" and "gave up after 3 attempt(s)" in response.error
    assert healthy.ok
    dead = [d for d in await bus.dead_letters(1000) if d.raw == poison.encode()]
    assert len(dead) == 1 and dead[0].delivery_count == 3
