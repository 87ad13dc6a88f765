"""Looking at Kafka without joining a group: queue stats, the live tap, dead letters, draining for a switch."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

from sandbox.bus.base import BusError, BusNotConnected, DeadLetter, QueueStats, TapMessage
from sandbox.bus.tap import describe_message
from sandbox.bus.kafka.client import AIOKafkaConsumer, KafkaClient, KafkaError, TopicPartition, header, headers, unavailable
from sandbox.bus.reconnect import Backoff, until_answered
from sandbox.protocol import KAFKA_DLQ, KAFKA_RESPONSES, KAFKA_TASKS_PREFIX, kafka_group, kafka_topic

log = logging.getLogger("sandbox.bus.kafka")
T = TypeVar("T")
SKIP = "skip"  # the DLQ header of a record that drops the dead letter it names


class KafkaInspector:
    """The Bus's inspection and migration methods on Kafka (base.Inspector)."""

    def __init__(self, client: KafkaClient):
        self.client = client
        self.bootstrap = client.bootstrap

    @unavailable
    async def queue_stats(self, agents: Iterable[str]) -> list[QueueStats]:
        agents = list(agents)
        consumer = self.client.consumer()
        await consumer.start()
        try:
            return [await self._stats(consumer, agent) for agent in agents]
        finally:
            await consumer.stop()

    async def _stats(self, consumer: AIOKafkaConsumer, agent: str) -> QueueStats:
        topic, group = kafka_topic(agent), kafka_group(agent)
        stats = QueueStats(agent=agent, channel=topic)
        partitions = await self.client.partitions(topic)
        if not partitions:
            stats.exists = False
            return stats
        stats.partitions = len(partitions)
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        committed = await self.client.committed_offsets(group, partitions)
        stats.length = sum(ends[tp] - starts[tp] for tp in partitions)
        stats.added = sum(ends.values())
        behind: dict[int, int] = {}
        for tp in partitions:
            done = committed.get(tp)
            offset = done.offset if done is not None and done.offset >= 0 else starts[tp]
            behind[tp.partition] = max(0, ends[tp] - offset)
        stats.lag = sum(behind.values())
        stable, stats.consumers = await self.client.group(group, topic)
        stats.rebalancing = not stable
        for member in stats.consumers:  # uncommitted in its partitions: what it has or will get
            member.pending = sum(behind.get(p, 0) for p in member.partitions)
        return stats

    async def tap(self, last: int = 0, since: float | None = None,
                  at: tuple[str, str] | None = None) -> AsyncIterator[TapMessage]:
        """Every partition of every laddr.* topic (but the registry), from the end (or a time, or an offset)."""
        consumer = self.client.consumer(fetch_max_wait_ms=100)
        await consumer.start()
        try:
            assigned = await self._tap_assign(consumer, set(), last)
            if since is not None:  # offsets-for-times; a partition with nothing newer starts at its end
                found = await consumer.offsets_for_times({tp: int(since * 1000) for tp in assigned})
                ends = await consumer.end_offsets(sorted(assigned))
                for tp in assigned:
                    consumer.seek(tp, found[tp].offset if found.get(tp) is not None else ends[tp])
            if at is not None:
                partition, _, offset = at[1].partition(":")
                for tp in assigned:
                    if tp.topic == at[0] and str(tp.partition) == partition:
                        consumer.seek(tp, int(offset))
            if last > 0:
                for message in await self._tap_replay(consumer, assigned, last):
                    yield message
            next_scan = time.monotonic() + 5.0
            backoff = Backoff()
            while True:  # after an outage, go on from our positions
                self.client.check_connected()  # the consumer is the tap's own: it would outlive the bus
                if time.monotonic() >= next_scan:  # topics of agents that appeared later
                    assigned = await self._until_answered(
                        lambda: self._tap_assign(consumer, assigned, 0, new_from_start=True), backoff)
                    next_scan = time.monotonic() + 5.0
                batches = await self._until_answered(lambda: consumer.getmany(timeout_ms=500, max_records=5000), backoff)
                for records in batches.values():
                    for record in records:
                        yield self.tap_message(record)
        finally:
            await consumer.stop()

    @unavailable
    async def history(self, last: int) -> list[TapMessage]:
        """Up to `last` newest messages per partition of every laddr.* topic, oldest first, then stop (trace)."""
        consumer = self.client.consumer()
        await consumer.start()
        try:
            assigned = await self._tap_assign(consumer, set(), last)
            return await self._tap_replay(consumer, assigned, last * max(1, len(assigned)))
        finally:
            await consumer.stop()

    @staticmethod
    async def _until_answered(call: Callable[[], Awaitable[T]], backoff: Backoff) -> T:
        return await until_answered(call, (KafkaError, BusError, OSError), backoff, log, "tap: %s; retrying in %.1fs",
                                    fatal=(BusNotConnected,))

    async def _tap_assign(
        self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition], last: int,
        new_from_start: bool = False,
    ) -> set[TopicPartition]:
        topics = [t for t in await self.client.list_topics() if t.startswith(KAFKA_TASKS_PREFIX) or t in (KAFKA_RESPONSES, KAFKA_DLQ)]
        wanted = {tp for t in topics for tp in await self.client.partitions(t)}
        if wanted == assigned:
            return assigned
        positions = {tp: await consumer.position(tp) for tp in assigned}
        consumer.assign(sorted(wanted))
        for tp, offset in positions.items():
            consumer.seek(tp, offset)
        fresh = sorted(wanted - assigned)
        if fresh:
            if new_from_start:
                await consumer.seek_to_beginning(*fresh)
            else:
                ends = await consumer.end_offsets(fresh)
                for tp in fresh:
                    consumer.seek(tp, max(0, ends[tp] - last))
        return wanted

    async def _tap_replay(
        self, consumer: AIOKafkaConsumer, partitions: set[TopicPartition], last: int
    ) -> list[TapMessage]:
        """Up to `last` messages per partition were rewound; keep the newest `last` overall."""
        ends = await consumer.end_offsets(sorted(partitions))
        found = [self.tap_message(r) async for r in self.client.records_until(consumer, ends)]
        found.sort(key=lambda m: m.timestamp)
        return found[-last:]

    @staticmethod
    def tap_message(record: Any) -> TapMessage:
        kind = "response" if record.topic == KAFKA_RESPONSES else "dlq" if record.topic == KAFKA_DLQ else "task"
        message = describe_message(
            record.topic, kind, record.value or b"", record.timestamp / 1000.0, f"{record.partition}:{record.offset}"
        )
        if kind == "dlq":
            skip = header(record.headers, SKIP)
            message.status = f"dropped {skip}" if skip else "dead: " + header(record.headers, "reason")
        return message

    @unavailable
    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        consumer = self.client.consumer()
        await consumer.start()
        try:
            partitions = await self.client.wait_partitions(KAFKA_DLQ)
            consumer.assign(partitions)
            ends = await consumer.end_offsets(partitions)
            starts = await consumer.beginning_offsets(partitions)
            for tp in partitions:
                consumer.seek(tp, max(starts[tp], ends[tp] - limit))
            letters, seen, skipped = [], set(), set()
            async for r in self.client.records_until(consumer, ends):
                if skip := header(r.headers, SKIP):  # a log keeps every record: this one says "gone"
                    skipped.add(skip)
                    continue
                # A worker that wrote a dead letter and then failed to commit leaves the task to the
                # partition's next owner, who writes it again: the same origin (topic/partition/offset).
                origin = header(r.headers, "origin")
                if origin and origin in seen:
                    continue
                seen.add(origin)
                letters.append(DeadLetter(
                    id=f"{r.partition}:{r.offset}",
                    source=header(r.headers, "source"),
                    reason=header(r.headers, "reason"),
                    delivery_count=int(header(r.headers, "delivery_count", "0") or 0),
                    raw=r.value or b"",
                    timestamp=r.timestamp / 1000.0,
                ))
            return [d for d in reversed(letters) if d.id not in skipped][:limit]
        finally:
            await consumer.stop()

    @unavailable
    async def requeue_dead_letter(self, dead: DeadLetter) -> None:
        # A Kafka log cannot delete one record: the replayed copy is what counts, and a skip record hides it.
        await self.client.send(dead.source, dead.raw, None, headers(requeued_from=dead.id))
        await self.drop_dead_letter(dead)

    @unavailable
    async def drop_dead_letter(self, dead: DeadLetter) -> None:
        """An empty record on the DLQ with header skip=<partition:offset>: dead_letters leaves that one out."""
        await self.client.send(KAFKA_DLQ, b"", None, headers(**{SKIP: dead.id}))

    async def _wait_group_empty(self, group: str, topic: str, timeout: float = 30.0) -> None:
        """Commits from outside the group are refused while it has members: wait for the last to go.

        A worker killed with -9 stays a member until its session times out (10 s).
        """
        deadline = time.monotonic() + timeout
        while True:
            members = await self.client.members(group, topic)
            if not members:
                return
            if time.monotonic() > deadline:
                names = ", ".join(m.name for m in members)
                raise BusError(f"consumer group {group} still has members ({names}): stop its workers first")
            log.info("waiting for %d member(s) of %s to leave or time out", len(members), group)
            await asyncio.sleep(1.0)

    @unavailable
    async def drain_pending(self, agent: str, sink: Callable[[bytes], Awaitable[None]]) -> int:
        """From the group's committed offsets to the end, without joining the group."""
        topic, group = kafka_topic(agent), kafka_group(agent)
        if not await self.client.partitions(topic):
            return 0
        await self._wait_group_empty(group, topic)
        consumer = self.client.consumer(group=group)
        await consumer.start()
        moved = 0
        try:
            partitions = await self.client.partitions(topic)
            if not partitions:
                return 0
            consumer.assign(partitions)
            ends = await consumer.end_offsets(partitions)
            starts = await consumer.beginning_offsets(partitions)
            for tp in partitions:
                done = await consumer.committed(tp)
                consumer.seek(tp, done if done is not None and done >= 0 else starts[tp])
            async for record in self.client.records_until(consumer, ends, timeout=300.0):
                await sink(record.value or b"")
                moved += 1
                await consumer.commit({TopicPartition(record.topic, record.partition): record.offset + 1})
            return moved
        finally:
            await consumer.stop()
