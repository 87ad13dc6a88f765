"""The whole stack on Compose with Kafka as three KRaft nodes (KAFKA_BROKERS=3 in .env), on the real
Docker engine with the locally built images: one stack for the module, several checks on it.

- status shows one service `kafka` 3/3 whose replicas are its nodes (as the local runtime does);
- Queues' consumer names, status --json, the answers' worker ids and Logs' tags name a worker
  replica the same way (researcher_worker-2);
- `laddr-sandbox kill kafka --replica 2` (the CLI, through Compose) stops node 2 while tasks are
  sent: every one is answered, and the node comes back in sync.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import orjson
import pytest

from sandbox.brokers.ports import free_ports
from sandbox.bus import make_bus
from sandbox.config import load_settings, write_env
from sandbox.runtime.base import UnknownReplica
from sandbox.runtime.compose.images import COMPOSE_DIR
from tests.runtime.compose.test_compose_stack import local_images  # noqa: F401 - the fixture (fails without an engine)

pytestmark = pytest.mark.timeout(900)
NODES = ["kafka-1", "kafka-2", "kafka-3"]


@pytest.fixture(scope="module")
async def cluster(local_images, tmp_path_factory):  # noqa: F811 - the imported fixture
    """A sandbox folder whose .env says KAFKA_BROKERS=3, its compose .env with free host ports."""
    from sandbox.runtime.compose import ComposeRuntime

    root = tmp_path_factory.mktemp("cluster") / f"laddrcluster{os.getpid()}"
    root.mkdir()
    write_env(root / ".env", {"KAFKA_BROKERS": "3", "QUEUE_BACKEND": "kafka"})
    env = root / "compose.env"
    env.write_text((COMPOSE_DIR / ".env.example").read_text())
    api, k1, k2, k3 = free_ports(4)
    write_env(env, {"COMPOSE_PROFILES": "", **local_images, "API_HOST_PORT": str(api), "KAFKA_HOST_PORT": str(k1),
                    "KAFKA_2_HOST_PORT": str(k2), "KAFKA_3_HOST_PORT": str(k3), "SCALE_RESEARCHER_WORKER": "2"})
    rt = ComposeRuntime(load_settings(root / ".env", environ={}), env_file=env, cwd=root)
    try:
        await rt.up("kafka")
        yield rt
    finally:
        await rt.down()
    assert not await rt._containers()


def cli(rt, *args: str) -> subprocess.CompletedProcess[str]:
    """The laddr-sandbox CLI in the cluster's folder, as a person runs it there."""
    env = {**os.environ, "LADDR_COMPOSE_ENV_FILE": str(rt.env_file), "LADDR_COMPOSE_DIR": str(COMPOSE_DIR)}
    env.pop("KAFKA_BROKERS", None)
    return subprocess.run([sys.executable, "-m", "sandbox.cli", "--runtime", "compose", *args], cwd=rt.config.root,
                          env=env, capture_output=True, text=True, timeout=180)


async def settled_consumers(rt, agent: str, want: int) -> set[str]:
    """The consumer names of an agent's group once it has `want` members owning partitions."""
    names: set[str] = set()
    async with make_bus(rt.bus_settings("kafka")) as bus:
        for _ in range(90):
            (stats,) = await bus.queue_stats([agent])
            names = {c.name for c in stats.consumers if c.partitions}
            if not stats.rebalancing and len(names) == want:
                return names
            await asyncio.sleep(1)
    pytest.fail(f"{agent}'s group never settled on {want} consumers: {names}")


async def test_status_shows_one_kafka_service_with_its_three_nodes(cluster) -> None:
    services = {s.name: s for s in await cluster.services()}
    assert [n for n in services if n.startswith("kafka")] == ["kafka"]  # no kafka-2 / kafka-3 rows
    assert "zookeeper" not in services  # KRaft: no ZooKeeper row
    kafka = services["kafka"]
    assert kafka.replicas_label == "3/3" and [r.name for r in kafka.replicas] == NODES, kafka
    assert [r.index for r in kafka.replicas] == [1, 2, 3] and kafka.health == "healthy", kafka
    assert sorted(kafka.ports) == sorted(int(cluster.config.values()[v]) for v in
                                         ("KAFKA_HOST_PORT", "KAFKA_2_HOST_PORT", "KAFKA_3_HOST_PORT"))
    for name in ("api", "researcher_worker", "coordinator_worker"):
        assert (services[name].state, services[name].health) == ("running", "healthy"), services[name]
    assert services["researcher_worker"].replicas_label == "2/2"
    # the containers bootstrap from every node, so one restarted while node 1 is down still connects
    assert "KAFKA_BOOTSTRAP=kafka:9092,kafka-2:9092,kafka-3:9092" in cluster.env_file.read_text()
    with pytest.raises(UnknownReplica, match=r"kafka has replica\(s\) 1, 2, 3, not 4"):
        await cluster.kill_replica("kafka", 4)


async def test_logs_tag_each_node_as_a_replica_of_kafka(cluster) -> None:
    tags = {line.replica async for line in cluster.logs("kafka", tail=20)}
    assert tags == set(NODES)


async def test_queues_status_answers_and_logs_name_the_same_replicas(cluster) -> None:
    consumers = await settled_consumers(cluster, "researcher", 2)
    assert consumers == {"researcher_worker-1", "researcher_worker-2"}
    async with make_bus(cluster.bus_settings("kafka")) as bus:
        answers = await asyncio.gather(*(bus.request("researcher", {"query": f"who {i}"}, 60) for i in range(20)))
    assert {a.worker_id for a in answers} <= consumers and all(a.status == "success" for a in answers)

    status = cli(cluster, "status", "--json")
    assert status.returncode == 0, status.stderr
    doc = orjson.loads(status.stdout)
    (queue,) = [q for q in doc["queues"] if q["agent"] == "researcher"]
    (service,) = [s for s in doc["services"] if s["name"] == "researcher_worker"]
    assert {c["name"] for c in queue["consumers"]} == consumers == {p["name"] for p in service["processes"]}
    assert [s["replicas"] for s in doc["services"] if s["name"] == "kafka"] == ["3/3"]

    lines = [line async for line in cluster.logs("researcher_worker", tail=500)]
    assert {line.replica for line in lines} == consumers
    for line in lines:  # each replica's own start line names it by the name its lines are tagged with
        if " serving agent " in line.text:
            assert f"worker {line.replica} serving" in line.text, line


async def test_killing_node_2_loses_no_task_and_the_node_comes_back(cluster) -> None:
    sent: list = []
    before = next(s for s in await cluster.services() if s.name == "kafka").replicas[1]

    async def send(bus) -> None:
        for i in range(60):  # about 12 s of tasks: before, during and after the kill
            sent.append(asyncio.create_task(bus.request("researcher", {"query": f"through the kill {i}"}, 120)))
            await asyncio.sleep(0.2)

    async with make_bus(cluster.bus_settings("kafka")) as bus:
        sending = asyncio.create_task(send(bus))
        await asyncio.sleep(2)
        killed = await asyncio.to_thread(cli, cluster, "kill", "kafka", "--replica", "2")
        assert killed.returncode == 0, killed.stderr
        await sending
        answers = await asyncio.gather(*sent)
    assert len(answers) == 60 and [a.status for a in answers] == ["success"] * 60  # none lost

    await cluster._wait_ready(["kafka-2"], lambda _: None, timeout=120)
    kafka = next(s for s in await cluster.services() if s.name == "kafka")
    assert kafka.replicas_label == "3/3" and kafka.replicas[1].name == "kafka-2"
    assert kafka.replicas[1].state == "running" and kafka.replicas[1].pid != before.pid  # a new process
    deadline, hurt = time.monotonic() + 120, ["not asked yet"]
    async with make_bus(cluster.bus_settings("kafka")) as bus:
        while hurt and time.monotonic() < deadline:  # node 2 catches up and is in sync again
            hurt = [h.describe() for h in await bus.partition_health(["researcher"]) if not h.healthy]
            await asyncio.sleep(1)
    assert not hurt, hurt
