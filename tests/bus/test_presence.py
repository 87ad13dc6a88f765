"""Pure logic: who serves an agent, from the registry and the broker's consumer groups."""

from __future__ import annotations

from sandbox.bus.base import ConsumerInfo, QueueStats
from sandbox.bus.presence import LADDR, LADDR_HEARTBEAT_S, SANDBOX, consumer_kind, merge
from sandbox.protocol import AgentInfo

NOW = 1_000_000.0


def test_consumer_names_tell_laddr_from_sandbox() -> None:
    assert consumer_kind("worker_1a2b3c4d") == LADDR  # Laddr's RedisBus
    assert consumer_kind("aiokafka-0.14.0") == LADDR  # Laddr's KafkaBus sets no client id
    assert consumer_kind("researcher_worker-2") == SANDBOX


def test_laddr_entries_are_judged_by_laddrs_30s_heartbeat_not_the_sandboxs() -> None:
    laddr = AgentInfo(name="summarizer", last_heartbeat=NOW - 40)  # one Laddr beat late: alive
    ours = AgentInfo(name="researcher", last_heartbeat=NOW - 40, worker_id="researcher_worker-1")  # 8 beats late
    rows = {r.name: r for r in merge({"summarizer": laddr, "researcher": ours}, [], NOW, 5.0)}
    assert rows["summarizer"].registry_kind == LADDR and rows["summarizer"].registry_alive
    assert rows["researcher"].registry_kind == SANDBOX and not rows["researcher"].registry_alive
    late = AgentInfo(name="summarizer", last_heartbeat=NOW - 3 * LADDR_HEARTBEAT_S - 5)
    assert not merge({"summarizer": late}, [], NOW, 5.0)[0].registry_alive


def test_an_agent_only_the_broker_knows_is_listed_with_its_consumers() -> None:
    stats = [QueueStats(agent="summarizer", channel="laddr.tasks.summarizer",
                        consumers=[ConsumerInfo(name="aiokafka-0.14.0", partitions=[0, 1])])]
    (row,) = merge({}, stats, NOW, 5.0)
    assert row.alive and row.kind == LADDR and row.registry is None
    assert "not in the registry" in row.notes[0]


def test_one_entry_never_silently_hides_the_other_kind_of_worker() -> None:
    laddr_entry = AgentInfo(name="researcher", last_heartbeat=NOW)
    stats = [QueueStats(agent="researcher", channel="laddr:tasks:researcher",
                        consumers=[ConsumerInfo(name="researcher_worker-1"), ConsumerInfo(name="worker_0011aabb")])]
    (row,) = merge({"researcher": laddr_entry}, stats, NOW, 5.0)
    assert row.kinds == [LADDR, SANDBOX] and row.kind == "laddr+sandbox"
    assert any("sandbox and Laddr workers in one group" in n for n in row.notes)


def test_a_stale_entry_nobody_consumes_is_not_alive() -> None:
    entry = AgentInfo(name="writer", last_heartbeat=NOW - 600, worker_id="writer_worker-1")
    (row,) = merge({"writer": entry}, [QueueStats(agent="writer", channel="laddr:tasks:writer")], NOW, 5.0)
    assert not row.alive and "stale" in row.notes[-1]
