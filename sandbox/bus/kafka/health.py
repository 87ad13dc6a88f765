"""Per-partition health of Kafka topics: leader, replicas, in-sync replicas.

`partition_health(cluster)` reads an aiokafka `ClusterMetadata` (the client's
`cluster` after a metadata fetch, e.g. `await client.fetch_all_metadata()`) and
flags the partitions a broker loss has hurt: under-replicated (fewer in sync
than replicas), below min.insync.replicas (acks=all writes fail) and offline
(no leader: nothing can be read or written).
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sandbox.brokers.kafka_wire import kafka_metadata

if TYPE_CHECKING:  # only kafka/client.py imports aiokafka at run time
    from aiokafka.cluster import ClusterMetadata


@dataclass(frozen=True)
class PartitionHealth:
    topic: str
    partition: int
    leader: int | None  # None: no leader (offline)
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    min_insync: int | None = None  # the topic's min.insync.replicas, when known

    @property
    def offline(self) -> bool:
        return self.leader is None

    @property
    def under_replicated(self) -> bool:
        return len(self.isr) < len(self.replicas)

    @property
    def below_min_isr(self) -> bool:
        """acks=all writes to it fail (NotEnoughReplicas) until a replica catches up."""
        return self.min_insync is not None and len(self.isr) < self.min_insync

    @property
    def out_of_sync(self) -> tuple[int, ...]:
        """Replicas that are not in sync (a dead or lagging broker)."""
        return tuple(r for r in self.replicas if r not in self.isr)

    @property
    def healthy(self) -> bool:
        return not (self.offline or self.under_replicated or self.below_min_isr)

    def describe(self) -> str:
        """One line, e.g. "laddr.tasks.researcher[2] leader 3 isr 3,1 of 1,2,3: under-replicated (2 out)"."""
        leader = "none" if self.leader is None else str(self.leader)
        line = (
            f"{self.topic}[{self.partition}] leader {leader} isr {','.join(map(str, self.isr)) or '-'}"
            f" of {','.join(map(str, self.replicas))}"
        )
        flags = [f for f, on in (("offline", self.offline), ("under-replicated", self.under_replicated),
                                 ("below min.insync.replicas", self.below_min_isr)) if on]
        if self.out_of_sync:
            flags.append(f"{','.join(map(str, self.out_of_sync))} out")
        return f"{line}: {', '.join(flags)}" if flags else line


def partition_health(
    cluster: ClusterMetadata,
    topics: list[str] | None = None,
    min_insync: int | dict[str, int] | None = None,
    include_internal: bool = False,
    live: set[int] | None = None,
) -> list[PartitionHealth]:
    """Health of every partition of `topics` (default: all the metadata knows), sorted by topic, partition.

    `min_insync` (one value, or per topic) enables the below-min-ISR flag. `live`, the broker ids
    that answer now, corrects metadata the cluster could not update: with most KRaft voters gone
    it keeps naming dead leaders and in-sync replicas (their removal needs the quorum).
    """
    names = topics if topics is not None else sorted(cluster.topics(exclude_internal_topics=not include_internal))
    out = []
    for topic in names:
        # aiokafka keeps replicas and ISR only in ClusterMetadata._partitions (no public accessor)
        parts = cluster._partitions.get(topic, {})  # noqa: SLF001
        floor = min_insync.get(topic) if isinstance(min_insync, dict) else min_insync
        for p in sorted(parts):
            meta = parts[p]
            leader = None if meta.leader is None or meta.leader < 0 else meta.leader
            isr = tuple(meta.isr)
            if live is not None:
                leader = leader if leader in live else None
                isr = tuple(r for r in isr if r in live)
            out.append(
                PartitionHealth(topic=topic, partition=p, leader=leader, replicas=tuple(meta.replicas),
                                isr=isr, min_insync=floor)
            )
    return out


def unhealthy(health: list[PartitionHealth]) -> list[PartitionHealth]:
    """The partitions that are offline, under-replicated or below min.insync.replicas."""
    return [h for h in health if not h.healthy]


async def _answers(address: str, timeout: float) -> bool:
    try:
        await kafka_metadata(address, timeout)
        return True
    except (OSError, TimeoutError, asyncio.TimeoutError, asyncio.IncompleteReadError, struct.error, IndexError):
        return False


async def answering_brokers(bootstrap: str, timeout: float = 1.5) -> int:
    """How many of the bootstrap addresses answer a Metadata request now."""
    parts = [p.strip() for p in bootstrap.split(",") if p.strip()]
    return sum(await asyncio.gather(*(_answers(p, timeout) for p in parts)))


async def live_broker_ids(brokers: list[tuple[int, str, int]], timeout: float = 1.5) -> set[int]:
    """The ids of the (id, host, port) brokers that answer now."""
    answers = await asyncio.gather(*(_answers(f"{host}:{port}", timeout) for _, host, port in brokers))
    return {b[0] for b, ok in zip(brokers, answers, strict=True) if ok}
