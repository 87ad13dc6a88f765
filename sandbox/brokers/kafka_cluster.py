"""A KRaft Kafka cluster on one machine: N combined broker+controller nodes.

`KafkaClusterSpec(data_dir, nodes=3).prepare()` returns one (argv, env) per node —
one foreground JVM each, for a process supervisor — built from `KafkaSpec` nodes
that share a cluster id and list every node in `controller.quorum.voters`.
Each node keeps its own data in data_dir/node-<id>; the cluster id in data_dir/cluster-id.

Three nodes: replication factor 3 for every topic (also the offsets and transaction
logs) and min.insync.replicas=2, so acks=all survives one node's loss and stops
with a clear error at two. Combined nodes are also the quorum: with one of three
alive there is no controller either.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import BrokerError
from .kafka import KafkaSpec, new_cluster_id, replication_properties, wait_kafka_ready
from .kafka_wire import kafka_metadata, kafka_quorum

# A SIGKILLed broker is fenced (its partitions get new leaders) when it misses
# heartbeats for broker.session.timeout.ms: Kafka's 9 s is most of a failover. A killed
# controller first costs an election: followers give up on it after
# controller.quorum.fetch.timeout.ms (Kafka: 2 s), then the new one waits a whole session
# before it fences the dead node. 3 s of six missed 0.5 s heartbeats, and a 1 s fetch
# timeout, took a controller kill from 10.6-11.5 s to 6.3-7.3 s until answering (issue 14);
# 60 s under load on two cores saw no election and no live node fenced. docker-compose.kraft3.yml: the same.
CLUSTER_PROPERTIES = {
    "broker.heartbeat.interval.ms": "500",
    "broker.session.timeout.ms": "3000",
    "controller.quorum.fetch.timeout.ms": "1000",
    "controller.quorum.election.backoff.max.ms": "500",
    "unclean.leader.election.enable": "false",  # never elect a replica that misses acknowledged writes
}
NODE_HEAP = ("128m", "384m")  # three JVMs on a laptop


@dataclass
class KafkaClusterSpec:
    data_dir: Path
    nodes: int = 3
    host: str = "127.0.0.1"
    # client and controller port of each node, in node order (default 9092, 9094, ... and +1)
    ports: list[int] | None = None
    controller_ports: list[int] | None = None
    partitions: int = 6
    replication_factor: int | None = None  # default min(3, nodes)
    min_insync_replicas: int | None = None  # default replication_factor - 1 (at least 1)
    check_ports: bool = True
    extra_properties: dict[str, str] | None = None
    heap: tuple[str, str] = NODE_HEAP

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()
        if self.nodes < 1:
            raise ValueError(f"a Kafka cluster needs at least 1 node, not {self.nodes}")
        self.ports = list(self.ports or [9092 + 2 * i for i in range(self.nodes)])
        self.controller_ports = list(self.controller_ports or [p + 1 for p in self.ports])
        if len(self.ports) != self.nodes or len(self.controller_ports) != self.nodes:
            raise ValueError(f"give {self.nodes} client ports and {self.nodes} controller ports")
        rf = self.replication_factor or min(3, self.nodes)
        if not 1 <= rf <= self.nodes:
            raise ValueError(f"replication factor {rf} needs 1..{self.nodes} nodes")
        self.replication_factor = rf
        self.min_insync_replicas = self.min_insync_replicas or max(1, rf - 1)

    @property
    def node_ids(self) -> list[int]:
        return list(range(1, self.nodes + 1))

    @property
    def quorum_voters(self) -> str:
        return ",".join(f"{n}@{self.host}:{p}" for n, p in zip(self.node_ids, self.controller_ports, strict=True))

    @property
    def bootstrap(self) -> str:
        """Every node's client address, comma-separated (what clients bootstrap from)."""
        return ",".join(self.addresses())

    @property
    def cluster_id(self) -> str:
        """The shared cluster id, made up on first use and kept in data_dir/cluster-id."""
        id_file = self.data_dir / "cluster-id"
        if not id_file.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            id_file.write_text(new_cluster_id() + "\n")
        return id_file.read_text().strip()

    def addresses(self) -> list[str]:
        """Each node's client address, in node order."""
        return [f"{self.host}:{p}" for p in self.ports]

    def shared_properties(self) -> dict[str, str | int]:
        """The server properties every node shares beyond its own id and listeners
        (replication, failure detection): what a Compose `kafka-N` service sets too."""
        return {
            **replication_properties(self.replication_factor, self.min_insync_replicas),
            **CLUSTER_PROPERTIES,
            **(self.extra_properties or {}),
        }

    def node(self, node_id: int) -> KafkaSpec:
        """The KafkaSpec of one node (1..nodes)."""
        if node_id not in self.node_ids:
            raise ValueError(f"no Kafka node {node_id}: the cluster has nodes 1..{self.nodes}")
        i = node_id - 1
        return KafkaSpec(
            self.data_dir / f"node-{node_id}",
            port=self.ports[i],
            controller_port=self.controller_ports[i],
            host=self.host,
            partitions=self.partitions,
            check_ports=self.check_ports,
            extra_properties={**CLUSTER_PROPERTIES, **(self.extra_properties or {})},
            node_id=node_id,
            quorum_voters=self.quorum_voters,
            cluster_id=self.cluster_id,
            replication_factor=self.replication_factor,
            min_insync_replicas=self.min_insync_replicas,
            heap=self.heap,
        )

    def prepare_node(
        self, node_id: int, java: str | None = None, jars: Path | None = None
    ) -> tuple[list[str], dict[str, str]]:
        """Write one node's config, format its storage once; its (argv, env)."""
        return self.node(node_id).prepare(java, jars)

    def prepare(self, java: str | None = None, jars: Path | None = None) -> list[tuple[list[str], dict[str, str]]]:
        """Every node's (argv, env), in node order."""
        return [self.prepare_node(n, java, jars) for n in self.node_ids]


async def kafka_cluster_status(addresses: list[str], timeout: float = 2.0) -> dict:
    """{"answering": [addresses that answer], "brokers": {live broker ids}, "controller": active id or -1}."""
    answering, brokers, controller = [], set(), -1
    for address in addresses:
        try:
            meta = await kafka_metadata(address, timeout)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, struct.error, IndexError):
            continue
        answering.append(address)
        brokers.update(b[0] for b in meta["brokers"])
        if controller < 0:
            try:
                controller = (await kafka_quorum(address, timeout))["leader_id"]
            except (OSError, TimeoutError, asyncio.IncompleteReadError, struct.error, IndexError):
                pass
    return {"answering": answering, "brokers": brokers, "controller": controller}


async def wait_kafka_cluster_ready(
    addresses: list[str],
    node_ids: list[int],
    timeout: float = 180.0,
    progress: Callable[[float], None] | None = None,
    alive: Callable[[], bool] | None = None,
) -> None:
    """Until every address answers, the metadata lists every node in `node_ids` as a live
    broker and the KRaft quorum has an active controller among them.

    `progress(seconds)` about once a second; BrokerError early when alive() turns false.
    """
    start = time.monotonic()
    died = BrokerError("a Kafka node exited while the cluster was starting: see its log for the reason")
    for address in addresses:  # each JVM up and answering
        try:
            await wait_kafka_ready(address, max(1.0, timeout - (time.monotonic() - start)), progress, alive)
        except BrokerError:
            if alive and not alive():
                raise died from None
            raise
    status: dict = {}
    while time.monotonic() - start < timeout:
        status = await kafka_cluster_status(addresses)
        if (len(status["answering"]) == len(addresses) and status["brokers"] == set(node_ids)
                and status["controller"] in node_ids):
            return
        if alive and not alive():
            raise died
        if progress:
            progress(time.monotonic() - start)
        await asyncio.sleep(0.5)
    raise BrokerError(
        f"Kafka cluster {','.join(addresses)} not ready after {timeout:.0f}s (live brokers"
        f" {sorted(status.get('brokers', ()))} of {node_ids}, controller {status.get('controller', -1)}): see the logs"
    )
