"""Fault scenarios on a three-broker KRaft cluster (RF 3, min.insync.replicas 2), under load
from the sandbox's real worker processes; the same sent / answered / duplicated / lost audit.

- kill -9 the leader of a busy task topic mid-load
- kill -9 the active controller mid-load
- kill one broker, then a second: writes stop with a clear error (nothing acknowledged is lost),
  and resume when one returns
- a dead letter written twice for one record (the commit after the first failed) is read once

Recovery (kill -> the first request answered again) is measured and reported, not asserted:
the machine these run on is shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sandbox.brokers.testing import KafkaCluster, running_kafka_cluster
from sandbox.bus import Bus, BusUnavailable, make_bus
from sandbox.config import Settings
from sandbox.protocol import KAFKA_DLQ, decode_task, kafka_topic
from tests.procs import unique_agent
from tests.reliability.harness import Outcome, ResponseLog
from tests.reliability.test_faults import fleet_of

pytestmark = pytest.mark.timeout(420)

PARTITIONS = 3


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[str, KafkaCluster]]:
    with running_kafka_cluster(nodes=3, partitions=PARTITIONS) as found:
        yield found


@pytest.fixture
async def healed(cluster: tuple[str, KafkaCluster]) -> KafkaCluster:
    """The cluster with every node up and every replica in sync (a scenario before may have left one down)."""
    _, handle = cluster
    for node in handle.spec.node_ids:
        handle.start(node)
    await handle.wait_ready()
    await handle.wait_in_sync()
    return handle


@pytest.fixture
def cluster_settings(cluster: tuple[str, KafkaCluster]) -> Settings:
    return Settings(queue_backend="kafka", kafka_bootstrap=cluster[0], kafka_brokers=3,
                    kafka_partitions=PARTITIONS, env_file=None)


@pytest.fixture
async def cbus(cluster_settings: Settings, healed: KafkaCluster):
    async with make_bus(cluster_settings) as bus:
        yield bus


async def answered_again(bus: Bus, agent: str, since: float, limit: float = 90.0) -> float:
    """Seconds from `since` until one request round-trips through the workers again."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            await bus.request(agent, {"i": -1, "probe": True}, timeout=5.0)
            return round(time.monotonic() - since, 1)
        except Exception:  # BusUnavailable or RequestTimeout while the cluster fails over
            await asyncio.sleep(0.2)
    return float("inf")


async def task_copies(bus: Bus, agent: str) -> int:
    """Tasks that appear more than once on their topic: a producer retry that duplicated a write."""
    client = bus.client  # type: ignore[attr-defined]
    consumer = client.consumer()
    await consumer.start()
    try:
        partitions = await client.partitions(kafka_topic(agent))
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        seen: Counter[str] = Counter()
        async for record in client.records_until(consumer, ends, timeout=60):
            seen[decode_task(record.value).task_id] += 1
        return sum(1 for n in seen.values() if n > 1)
    finally:
        await consumer.stop()


async def load(bus: Bus, agent: str, total: int, per_second: float, ids: list[str], errors: list[str]) -> None:
    """Publish `total` tasks at about `per_second`; ids only of acknowledged ones, errors' texts."""
    for i in range(total):
        try:
            task = await bus.publish_task(agent, {"i": i, "simulate": {"delay_ms": random.randint(20, 100)}})
            ids.append(task.task_id)
        except BusUnavailable as exc:
            errors.append(str(exc))
        await asyncio.sleep(1 / per_second)


@contextlib.asynccontextmanager
async def working(bus: Bus, handle: KafkaCluster, settings: Settings, tmp_path: Path,
                  prefix: str) -> AsyncIterator[tuple[str, ResponseLog]]:
    """A fresh agent's topic, fully replicated, two real workers serving it, and the response audit."""
    agent = unique_agent(prefix)
    await bus.ensure_topology([agent], partitions=PARTITIONS)
    await handle.wait_in_sync([kafka_topic(agent)])
    async with fleet_of(agent, settings, tmp_path) as fleet:
        await asyncio.to_thread(fleet.start, 2)
        log = await ResponseLog(bus).mark()
        try:
            yield agent, log
        finally:
            await log.close()


async def kill_under_load(bus: Bus, handle: KafkaCluster, settings: Settings, tmp_path: Path, record,
                          scenario: str, choose) -> Outcome:
    started = time.monotonic()
    async with working(bus, handle, settings, tmp_path, "c") as (agent, log):
        ids: list[str] = []
        errors: list[str] = []
        producing = asyncio.create_task(load(bus, agent, 300, 30, ids, errors))
        await asyncio.sleep(4)  # mid-load: tasks on every partition, some in hand
        victim = await choose(agent)
        killed_at = time.monotonic()
        handle.kill(victim)
        recovery = await answered_again(bus, agent, killed_at)
        await producing
        await log.wait_all(ids, timeout=120)
        copies = await task_copies(bus, agent)
        outcome = record(Outcome.measure(scenario, "kafka", ids, log, started, killed=f"node{victim}",
                                         answers_again_s=recovery, task_copies=copies, send_errors=len(errors)))
    handle.start(victim)
    assert outcome.lost == 0, outcome.line()
    assert copies == 0, f"{copies} task(s) written twice: the producer is not idempotent"
    return outcome


async def test_c1_kill_leader_of_busy_topic(cbus: Bus, healed: KafkaCluster, cluster_settings: Settings,
                                            tmp_path: Path, record) -> None:
    async def leader_of_partition_0(agent: str) -> int:
        return (await healed.leaders(kafka_topic(agent)))[0]

    await kill_under_load(cbus, healed, cluster_settings, tmp_path, record, "c1 kill -9 topic leader",
                          leader_of_partition_0)


async def test_c2_kill_controller(cbus: Bus, healed: KafkaCluster, cluster_settings: Settings,
                                  tmp_path: Path, record) -> None:
    async def controller(_agent: str) -> int:
        return await healed.controller()

    await kill_under_load(cbus, healed, cluster_settings, tmp_path, record, "c2 kill -9 controller", controller)


async def test_c3_two_brokers_down_stop_writes_then_resume(cbus: Bus, healed: KafkaCluster,
                                                           cluster_settings: Settings, tmp_path: Path,
                                                           record) -> None:
    """One broker lost: writes go on. Two: a send fails with a reason within its bound. One back: resume."""
    started = time.monotonic()
    async with working(cbus, healed, cluster_settings, tmp_path, "c3") as (agent, log):
        ids: list[str] = []
        errors: list[str] = []
        await load(cbus, agent, 60, 30, ids, errors)
        first, second = [n for n in healed.spec.node_ids if n != await healed.controller()][:2]
        healed.kill(first)
        await load(cbus, agent, 60, 30, ids, errors)  # one of three down: still written
        one_down_errors = len(errors)
        healed.kill(second)
        refused_at = time.monotonic()
        try:
            await cbus.publish_task(agent, {"i": "during-outage"})
            refusal = "accepted"
        except BusUnavailable as exc:
            refusal = str(exc)
        refused_after = round(time.monotonic() - refused_at, 1)
        healed.start(first)
        back_at = time.monotonic()
        recovery = await answered_again(cbus, agent, back_at, limit=180)
        await load(cbus, agent, 60, 30, ids, errors)
        await log.wait_all(ids, timeout=150)
        outcome = record(Outcome.measure("c3 2 of 3 down, 1 back", "kafka", ids, log, started,
                                         refused_after_s=refused_after, answers_again_s=recovery,
                                         send_errors=len(errors)))
    healed.start(second)
    print(f"\nwith 2 of 3 brokers down, a send said: {refusal}")
    assert one_down_errors == 0, "one broker of three down must not stop writes"
    assert refusal != "accepted", "a write with 2 of 3 brokers down must fail, not be acknowledged"
    assert "in-sync replicas" in refusal and "brokers answer" in refusal, refusal
    assert outcome.lost == 0, outcome.line()


async def test_c4_dead_letter_written_twice_is_read_once(cbus: Bus, record) -> None:
    """The worker that dead-letters a record and then fails to commit leaves it to the partition's
    next owner, which dead-letters it again: two records, one origin; the DLQ reader shows one."""
    client = cbus.client  # type: ignore[attr-defined]
    await cbus.ensure_topology([])
    origin = f"{kafka_topic('c4')}/0/{random.randint(0, 10**9)}"
    raw = b'{"not": "a task"}'
    for _ in range(2):  # first owner, then the next one after the failed commit
        await client.dead_letter(kafka_topic("c4"), raw, "undecodable", 1, None, origin)
    letters = [d for d in await cbus.dead_letters(1000) if d.raw == raw]
    copies = await raw_copies(cbus, origin)
    print(f"\nDLQ: {copies} records on {KAFKA_DLQ} for origin {origin}, {len(letters)} shown")
    assert copies == 2 and len(letters) == 1


async def raw_copies(bus: Bus, origin: str) -> int:
    from sandbox.bus.kafka.client import header

    client = bus.client  # type: ignore[attr-defined]
    consumer = client.consumer()
    await consumer.start()
    try:
        partitions = await client.partitions(KAFKA_DLQ)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        return sum([1 async for r in client.records_until(consumer, ends) if header(r.headers, "origin") == origin])
    finally:
        await consumer.stop()
