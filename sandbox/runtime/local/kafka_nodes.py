"""The local Kafka as one service of N KRaft nodes (KAFKA_BROKERS=N).

One node is the program `kafka` (as before); N > 1 are the programs `kafka-1..N`,
one JVM each, shown and killed as the replicas of one service `kafka`, like a
worker's. Node 1 keeps the ports it always had (state.ports "kafka",
"kafka_controller"); node i > 1 gets "kafka_<i>", "kafka_controller_<i>".
Clients bootstrap from every node, so losing any one of them loses nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from sandbox.brokers.errors import BrokerError
from sandbox.brokers.kafka import find_java
from sandbox.brokers.kafka_cluster import KafkaClusterSpec, wait_kafka_cluster_ready
from sandbox.brokers.kafka_jars import ensure_kafka_jars
from sandbox.config import Settings
from sandbox.runtime.base import HOST, Progress, RuntimeFailure
from sandbox.runtime.local.supervisor_conf import PRIORITY_BROKER, Program

KAFKA_STOP_WAIT_S = 60  # a controlled shutdown flushes and closes every partition


def node_programs(nodes: int) -> list[str]:
    """The supervisord programs of a Kafka of `nodes` nodes."""
    return ["kafka"] if nodes <= 1 else [f"kafka-{i}" for i in range(1, nodes + 1)]


def is_kafka_node(program: str) -> bool:
    base, _, n = program.rpartition("-")
    return program == "kafka" or (base == "kafka" and n.isdigit())


def is_broker_program(program: str) -> bool:
    return program == "redis" or is_kafka_node(program)


def port_keys(nodes: int) -> tuple[str, ...]:
    keys: list[str] = []
    for i in range(1, max(1, nodes) + 1):
        suffix = "" if i == 1 else f"_{i}"
        keys += [f"kafka{suffix}", f"kafka_controller{suffix}"]
    return tuple(keys)


def port_owner(key: str, nodes: int) -> str:
    """The program that holds a state.ports key."""
    if not key.startswith("kafka"):
        return key
    index = int(key.rpartition("_")[2]) if key.rpartition("_")[2].isdigit() else 1
    return node_programs(nodes)[min(index, max(1, nodes)) - 1]


def storage_dir(data_root: Path, nodes: int) -> Path:
    """Each node count has its own storage: a KRaft quorum names its voters for good."""
    return data_root / ("kafka" if nodes <= 1 else f"kafka-{nodes}nodes")


def node_count_change(data_root: Path, before: int, after: int) -> str | None:
    """What `up` says when KAFKA_BROKERS changed since Kafka last ran in this folder."""
    old, new = storage_dir(data_root, before), storage_dir(data_root, after)
    if before == after or not old.exists():
        return None
    what = f"the storage it had with {after} (in {new})" if new.exists() else "fresh storage, with no topics or tasks yet"
    return (f"Kafka goes from {before} to {after} node(s): it starts on {what}; "
            f"the {before}-node storage stays in {old} for when you go back")


def cluster_spec(data_dir: Path, ports: dict[str, int], settings: Settings, nodes: int) -> KafkaClusterSpec:
    keys = port_keys(nodes)
    return KafkaClusterSpec(
        data_dir, nodes=nodes, host=HOST,
        ports=[ports[k] for k in keys[0::2]], controller_ports=[ports[k] for k in keys[1::2]],
        partitions=settings.kafka_partitions, check_ports=False,
    )


def bootstrap(ports: dict[str, int], nodes: int) -> str | None:
    """Every node's client address, or None before the ports are chosen."""
    client = [ports.get(k) for k in port_keys(nodes)[0::2]]
    return ",".join(f"{HOST}:{p}" for p in client) if all(client) else None


async def cluster_programs(settings: Settings, data_dir: Path, ports: dict[str, int], directory: Path,
                           progress: Progress, env_delta) -> list[Program]:
    """One program per node; fetches the jars once and formats each node's storage once."""
    nodes = settings.kafka_brokers
    try:
        java = find_java()
        jars = await asyncio.to_thread(ensure_kafka_jars, None, jar_progress(progress))
        spec = cluster_spec(data_dir, ports, settings, nodes)
        if not (spec.node(1).log_dir / "meta.properties").exists():
            progress(f"formatting the storage of {nodes} Kafka nodes (first start in this folder)")
        prepared = [await asyncio.to_thread(spec.prepare_node, n, java, jars) for n in spec.node_ids]
    except BrokerError as exc:
        raise RuntimeFailure(str(exc)) from None
    return [Program(name, argv, env_delta(env), directory, priority=PRIORITY_BROKER,
                    stopwaitsecs=KAFKA_STOP_WAIT_S, startsecs=3)
            for name, (argv, env) in zip(node_programs(nodes), prepared, strict=True)]


async def wait_cluster(address: str, nodes: int, timeout: float, alive, progress: Progress) -> None:
    """Every node answers, is a live broker, and the quorum has a controller."""
    started = time.monotonic()  # the wait's own progress restarts its clock for each node

    def said(_: float) -> None:
        progress(f"starting {nodes} Kafka nodes (JVMs)… {time.monotonic() - started:.0f}s")

    await wait_kafka_cluster_ready(address.split(","), list(range(1, nodes + 1)), timeout, alive=alive, progress=said)


def jar_progress(progress: Progress) -> Callable[[int, int, str], None]:
    last = [0.0]

    def show(done: int, total: int, name: str) -> None:
        now = time.monotonic()
        if now - last[0] >= 1.0 or done >= total:
            last[0] = now
            progress(f"fetching Kafka jars (once per user): {done / 1e6:.0f}/{total / 1e6:.0f} MB")

    return show
