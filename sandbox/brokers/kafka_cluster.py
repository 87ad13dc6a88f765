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

from dataclasses import dataclass
from pathlib import Path

from .kafka import KafkaSpec, new_cluster_id

# A SIGKILLed broker is fenced (its partitions get new leaders) when it misses
# heartbeats for broker.session.timeout.ms: Kafka's 9 s is most of a failover.
CLUSTER_PROPERTIES = {
    "broker.heartbeat.interval.ms": "1000",
    "broker.session.timeout.ms": "6000",
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
        return ",".join(f"{self.host}:{p}" for p in self.ports)

    @property
    def cluster_id(self) -> str:
        """The shared cluster id, made up on first use and kept in data_dir/cluster-id."""
        id_file = self.data_dir / "cluster-id"
        if not id_file.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            id_file.write_text(new_cluster_id() + "\n")
        return id_file.read_text().strip()

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
