"""The Compose Kafka cluster shown as the local runtime shows it: one service `kafka`, its nodes the replicas.

docker-compose.kraft3.yml runs node 1 as the Compose service `kafka` and nodes 2 and 3 as `kafka-2`
and `kafka-3` (each its own listeners and port). status, logs, kill and restart fold them into
`kafka` with replicas kafka-1..3, so `kill kafka --replica 2` means the same on both runtimes.
"""

from __future__ import annotations

from typing import Any

from sandbox.runtime.compose.config import CLUSTER_FILE, CLUSTER_NODES
from sandbox.runtime.compose.engine import env_of, number

NODES = ("kafka", *CLUSTER_NODES)  # Compose services of the cluster's nodes 1, 2, 3



def node_index(service: str) -> int | None:
    """1 for `kafka`, N for `kafka-N`; None for any other service."""
    if service == "kafka":
        return 1
    base, _, n = service.rpartition("-")
    return int(n) if base == "kafka" and n.isdigit() and service in NODES else None


def shown_service(service: str) -> str:
    """The service a container is shown under: a node of the cluster under `kafka`."""
    return "kafka" if node_index(service) else service


def members(service: str) -> list[str]:
    """The Compose services behind a shown service (`kafka`: every node the files may have)."""
    return list(NODES) if service == "kafka" else [service]


def replica_index(service: str, container: Any) -> int:
    """The replica number shown: a node's id for the cluster's nodes, else Compose's container number."""
    return node_index(service) if service in CLUSTER_NODES else number(container)  # type: ignore[return-value]


def replica_tag(service: str, container: Any) -> str:
    """e.g. kafka-2 (node 2), researcher_worker-3 (its third container)."""
    return f"{shown_service(service)}-{replica_index(service, container)}"


def nodes_of_file(files: list[str]) -> int:
    """Kafka nodes the chosen backend file runs (0: none, e.g. the Redis file)."""
    backend_file = files[1] if len(files) > 1 else ""
    return 3 if backend_file.endswith(CLUSTER_FILE) else 1 if "kafka" in backend_file or "kraft" in backend_file else 0


def nodes_of_container(container: Any) -> int:
    """Nodes of the quorum a Kafka container was made for (1 with ZooKeeper: no quorum of its own)."""
    voters = env_of(container).get("KAFKA_CONTROLLER_QUORUM_VOTERS", "")
    return len([v for v in voters.split(",") if v.strip()]) or 1
