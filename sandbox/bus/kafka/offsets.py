"""Kafka's delivery counts and committable offsets: bookkeeping only, no I/O.

Kafka keeps no delivery count, so the commit's metadata carries one: how far
this member had fetched ("upto") and how often the oldest open task had been
delivered ("n"). The next owner of the partition reads it and knows which
tasks are redeliveries, so a task that crashes every worker is given up.
Partitions are any hashable key (the consumer uses aiokafka's TopicPartition).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping

import orjson

Partition = Hashable


class Offsets:
    """Per partition: the open (fetched, unanswered) offsets with their delivery counts, and what to commit."""

    def __init__(self, member: str):
        self.member = member  # written into the metadata ("by"), for people reading it
        self.open: dict[Partition, dict[int, int]] = {}  # offset -> delivery count
        self.fetched: dict[Partition, int] = {}  # the offset after the last one fetched
        self.committed: dict[Partition, tuple[int, str]] = {}
        # What the previous owner left: (committed offset, fetched up to, its count).
        self.previous: dict[Partition, tuple[int, int, int]] = {}
        # Records handed to the handler (or about to be, right after the next commit).
        self.attempting: set[tuple[Partition, int]] = set()

    # -- what the previous owner left ------------------------------------------
    def knows(self, tp: Partition) -> bool:
        """Whether the previous owner's commit was read for this partition."""
        return tp in self.previous

    def learn(self, assigned: Iterable[Partition], found: Mapping[Partition, tuple[int, str | None]]) -> None:
        """Take in the group's committed (offset, metadata) of newly owned partitions."""
        for tp in assigned:
            self.previous[tp] = (-1, 0, 0)
        for tp, (offset, metadata) in found.items():
            try:
                doc = orjson.loads(metadata or "{}")
                self.previous[tp] = (offset, int(doc.get("upto", 0)), int(doc.get("n", 0)))
            except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
                continue  # not ours (another client committed): counts start at 1

    def delivery_count(self, tp: Partition, offset: int) -> int:
        committed, upto, count = self.previous.get(tp, (0, 0, 0))
        if offset == committed and upto > committed:
            return count + 1
        return 2 if committed < offset < upto else 1

    # -- this member's work ----------------------------------------------------
    def track(self, tp: Partition, offset: int) -> int:
        """A record was fetched: it is open until done(); returns its delivery count."""
        count = self.delivery_count(tp, offset)
        self.open.setdefault(tp, {})[offset] = count
        self.fetched[tp] = max(self.fetched.get(tp, 0), offset + 1)
        return count

    def is_open(self, tp: Partition, offset: int) -> bool:
        return offset in self.open.get(tp, {})

    def count(self, tp: Partition, offset: int) -> int:
        return self.open[tp][offset]

    def attempt(self, tp: Partition, offset: int) -> None:
        """The record goes to the handler: committed from now on as one more delivery."""
        self.attempting.add((tp, offset))

    def done(self, tp: Partition, offset: int) -> None:
        """Its response is published: no longer holds the partition's commit back."""
        self.attempting.discard((tp, offset))
        open_offsets = self.open.get(tp)
        if open_offsets is not None:
            open_offsets.pop(offset, None)

    # -- committing --------------------------------------------------------------
    def committable(self) -> dict[Partition, tuple[int, str]]:
        """Per partition the next offset to read (nothing below it is unanswered) and the metadata.

        Only what changed since the last commit.
        """
        offsets = {}
        for tp, after in self.fetched.items():
            open_offsets = self.open.get(tp) or {}
            offset = min(open_offsets) if open_offsets else after
            count = open_offsets.get(offset, 0)
            if count and (tp, offset) not in self.attempting:
                count -= 1  # held back, not tried yet: its next owner must not count this as a delivery
            metadata = orjson.dumps({"upto": after, "n": count, "by": self.member}).decode()
            if self.committed.get(tp) != (offset, metadata):
                offsets[tp] = (offset, metadata)
        return offsets

    def mark_committed(self, offsets: Mapping[Partition, tuple[int, str]]) -> None:
        self.committed.update(offsets)

    # -- ownership changes -----------------------------------------------------
    def forget(self, partitions: Iterable[Partition]) -> None:
        """Partitions revoked in a rebalance: their next owner takes over from the last commit."""
        gone = set(partitions)
        self.attempting = {key for key in self.attempting if key[0] not in gone}
        for tp in gone:
            self.open.pop(tp, None)
            self.fetched.pop(tp, None)
            self.committed.pop(tp, None)
            self.previous.pop(tp, None)

    def reset(self) -> None:
        """The consumer left the group: nothing is open; what previous owners left stays known."""
        self.open.clear()
        self.fetched.clear()
        self.committed.clear()
        self.attempting.clear()
