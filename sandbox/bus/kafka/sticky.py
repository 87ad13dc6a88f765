"""Which partition a task or an answer goes to: one per event-loop turn, in turn.

aiokafka hashes each message's key (murmur2 in pure Python) and looks the
topic's partitions up for every message, so the answers of one busy moment are
spread over every partition: one batch each in the produce request, and as many
appends on the broker. Nothing reads meaning into a task's or an answer's
partition (consumers read them all, the key is kept for people and the tap), so
the messages of one loop turn share one partition, as Kafka's own sticky
partitioner does for unkeyed ones, and the next turn takes the next partition
whose leader is up. Not for the compacted registry: there the key must decide.
"""

from __future__ import annotations

import asyncio
from typing import Any


class StickyPartitions:
    def __init__(self) -> None:
        self._chosen: dict[str, int] = {}
        self._turn: dict[str, int] = {}  # topic -> how many turns chose for it (round robin)
        self._reset_soon = False

    def choose(self, cluster: Any, topic: str) -> int | None:
        """The partition for `topic` in this loop turn; None while its metadata is unknown (aiokafka waits)."""
        chosen = self._chosen.get(topic)
        if chosen is not None:
            return chosen
        partitions = cluster.available_partitions_for_topic(topic) or cluster.partitions_for_topic(topic)
        if not partitions:
            return None
        turn = self._turn.get(topic, 0)
        self._turn[topic] = turn + 1
        ordered = sorted(partitions)
        chosen = self._chosen[topic] = ordered[turn % len(ordered)]
        if not self._reset_soon:
            self._reset_soon = True
            asyncio.get_running_loop().call_soon(self._reset)  # runs in the next turn
        return chosen

    def _reset(self) -> None:
        self._chosen.clear()
        self._reset_soon = False
