"""The worker side of the Kafka backend: consume an agent's topic, answer each task, then commit.

Built on the KafkaClient alone (client.py), never on the bus; what may be
committed and how often each task was delivered is kept by Offsets (offsets.py).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from sandbox.bus.base import BusError, Handler
from sandbox.bus.delivery import RetryPolicy, answer, publish_until_stopped, room
from sandbox.bus.kafka.client import (
    METADATA_MAX_AGE_MS,
    AIOKafkaConsumer,
    ConsumerRebalanceListener,
    KafkaClient,
    KafkaError,
    TopicPartition,
    log,
)
from sandbox.bus.kafka.offsets import Offsets
from sandbox.bus.reconnect import Backoff
from sandbox.protocol import KAFKA_DLQ, DecodeError, decode_task, kafka_group, kafka_topic

COMMIT_EVERY_S = 0.1
REVOKE_WAIT_S = 10.0  # how long a rebalance waits for in-flight tasks of revoked partitions
# Not published before stopping: the offset is not committed and the partition's next owner does it again.
RETRY = RetryPolicy("Kafka", (BusError, KafkaError), "left uncommitted for the next owner", log)


class TopicConsumer:
    """One worker's loop on one agent's topic: fetch, handle, answer, then commit."""

    def __init__(self, client: KafkaClient, agent: str, name: str, handler: Handler, concurrency: int):
        self.client = client
        self.agent = agent
        self.topic = kafka_topic(agent)
        self.group = kafka_group(agent)
        self.name = name
        self.handler = handler
        self.concurrency = max(1, concurrency)
        self.max_deliveries = client.settings.max_deliveries
        self.inflight: dict[tuple[TopicPartition, int], asyncio.Task[None]] = {}
        self.offsets = Offsets(name)
        self.consumer: AIOKafkaConsumer | None = None
        self.stop = asyncio.Event()
        self.held: deque[tuple[TopicPartition, Any]] = deque()  # redeliveries waiting to run alone
        self.revoking: set[TopicPartition] = set()  # no new work starts on these during a rebalance

    async def commit(self, only: Iterable[TopicPartition] | None = None) -> None:
        offsets = self.offsets.committable()
        if only is not None:
            keep = set(only)
            offsets = {tp: o for tp, o in offsets.items() if tp in keep}
        if not offsets or self.consumer is None:
            return
        try:
            await self.consumer.commit(offsets)
            self.offsets.mark_committed(offsets)
        except KafkaError as exc:  # e.g. during a rebalance: the next commit catches up
            log.warning("offset commit failed (%s); will retry", exc)

    async def learn_previous(self, assigned: Iterable[TopicPartition]) -> None:
        """Read what the partitions' previous owner committed, for delivery counts."""
        assigned = list(assigned)
        if not assigned:
            return
        try:
            found = await self.client.committed_offsets(self.group, assigned, timeout=5.0)
        except (KafkaError, BusError) as exc:
            log.warning("cannot read committed offsets (%s); delivery counts start at 1", exc)
            return
        self.offsets.learn(assigned, {tp: (meta.offset, meta.metadata) for tp, meta in found.items()})

    async def run(self, stop: asyncio.Event) -> None:
        self.stop = stop
        backoff = Backoff()
        while not stop.is_set():
            self.consumer = self.client.consumer(
                group=self.group,
                client_id=self.name,
                max_poll_records=self.concurrency,
                session_timeout_ms=10_000,
                heartbeat_interval_ms=1_000,
                fetch_max_wait_ms=100,
                # See partitions added to the topic within seconds, not aiokafka's default 5 minutes.
                metadata_max_age_ms=METADATA_MAX_AGE_MS,
            )
            try:
                await self.consumer.start()
                self.consumer.subscribe([self.topic], listener=_Rebalance(self))
                backoff.reset()
                await self._loop(stop)
            except (KafkaError, OSError) as exc:  # never crash the worker on a broker-side failure
                log.warning("lost Kafka (%s); reconnecting in %.1fs", exc or type(exc).__name__, backoff.delay)
                await backoff.sleep_or(stop)
            finally:
                await self._finish_inflight()
                await self.commit()
                await self.consumer.stop()  # leaves the group: partitions move at once
                self.offsets.reset()
                self.held.clear()
                self.revoking.clear()

    async def _loop(self, stop: asyncio.Event) -> None:
        assert self.consumer is not None
        next_commit = time.monotonic() + COMMIT_EVERY_S
        while not stop.is_set():
            free = 0 if self.held else await room(self.concurrency, self.inflight)
            if self.held:  # nothing new is fetched until every held record had its turn alone
                await self._run_held_alone()
                if self.inflight:
                    await asyncio.wait(self.inflight.values(), return_when=asyncio.FIRST_COMPLETED, timeout=0.2)
            elif free <= 0:
                await asyncio.wait(self.inflight.values(), return_when=asyncio.FIRST_COMPLETED, timeout=0.2)
            else:
                batches = await self.consumer.getmany(timeout_ms=200, max_records=free)
                # Fetching may start before the rebalance callback ran: learn here.
                await self.learn_previous([tp for tp in batches if not self.offsets.knows(tp)])
                # A rebalance may run at any await: keep only partitions still ours.
                owned = self.consumer.assignment()
                batches = {tp: records for tp, records in batches.items() if tp in owned and tp not in self.revoking}
                for tp, records in batches.items():
                    for record in records:
                        self.offsets.track(tp, record.offset)
                if batches:
                    # Record what we take before working on it (the commit below): a
                    # task that kills its worker is then known as a redelivery by the next.
                    fetched = [(tp, r) for tp, records in batches.items() for r in records]
                    if any(self.offsets.count(tp, r.offset) > 1 for tp, r in fetched):
                        # The previous owner died with some of these in flight: one may be
                        # what killed it. Run them one by one, so that only the culprit
                        # counts its deliveries up and its neighbours are answered.
                        self.held.extend(sorted(fetched, key=lambda pair: (pair[0].partition, pair[1].offset)))
                        await self.commit()  # not attempted: their counts stay as they are
                    else:
                        for tp, r in fetched:
                            self.offsets.attempt(tp, r.offset)
                        await self.commit()
                        for tp, record in fetched:
                            self._start(tp, record)
            if time.monotonic() >= next_commit:
                await self.commit()
                next_commit = time.monotonic() + COMMIT_EVERY_S

    async def _run_held_alone(self) -> None:
        """Start the next held record, with nothing else in flight, once its attempt is committed.

        The commit makes it the partition's committed offset with its own count: if it
        kills this worker, the next owner charges it, and only it, one more delivery.
        """
        while self.held and not self.inflight:
            tp, record = self.held.popleft()
            if not self.offsets.is_open(tp, record.offset):  # revoked meanwhile
                continue
            self.offsets.attempt(tp, record.offset)
            await self.commit()
            self._start(tp, record)
            return

    def _start(self, tp: TopicPartition, record: Any) -> None:
        if tp in self.revoking or not self.offsets.is_open(tp, record.offset):
            return  # its partition is being (or was) handed over: the next owner does it
        count = self.offsets.count(tp, record.offset)
        task = asyncio.create_task(self._handle(tp, record, count))
        self.inflight[(tp, record.offset)] = task

        def done(_: asyncio.Task[None], key: tuple[TopicPartition, int] = (tp, record.offset)) -> None:
            self.inflight.pop(key, None)

        task.add_done_callback(done)

    async def _handle(self, tp: TopicPartition, record: Any, count: int) -> None:
        raw = record.value or b""
        try:
            task = decode_task(raw)
        except DecodeError as exc:
            key = record.key.decode(errors="replace") if record.key else None
            where = f"message {tp.partition}:{record.offset}"
            reason = str(exc)
            log.warning("message %s:%d on %s sent to %s: %s", tp.partition, record.offset, self.topic, KAFKA_DLQ, reason)
            origin = f"{self.topic}/{tp.partition}/{record.offset}"  # the DLQ reader keeps one per origin
            if await self._publish(lambda: self.client.dead_letter(self.topic, raw, reason, count, key, origin), where):
                self.offsets.done(tp, record.offset)
            return
        if count > 1:
            log.info("task %s redelivered (delivery %d)", task.task_id, count)
        response, dead = await answer(self.handler, task, count, self.max_deliveries)
        what = f"task {task.task_id}"
        if dead:
            key = record.key.decode(errors="replace") if record.key else None
            attempts = response.delivery_count or count
            origin = f"{self.topic}/{tp.partition}/{record.offset}"
            if not await self._publish(lambda: self.client.dead_letter(self.topic, raw, dead, attempts, key, origin),
                                       what):
                return
        if await self._publish(lambda: self.client.publish_response(response), what):
            self.offsets.done(tp, record.offset)

    async def _publish(self, send: Callable[[], Awaitable[None]], what: str) -> bool:
        return await publish_until_stopped(send, what, self.stop, RETRY, self.client.watch)

    async def _finish_inflight(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        keep = set(partitions) if partitions is not None else None
        deadline = time.monotonic() + REVOKE_WAIT_S if keep is not None else None
        said = False
        while True:  # again and again: nothing new starts on these partitions meanwhile, but be sure
            tasks = [t for (tp, _), t in self.inflight.items() if keep is None or tp in keep]
            if not tasks:
                return
            if not said:
                log.info("finishing %d in-flight task(s)", len(tasks))
                said = True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                log.warning("%d task(s) still running after %.0fs; their partitions move on uncommitted",
                            len(tasks), REVOKE_WAIT_S)
                return
            await asyncio.wait(tasks, timeout=left)

    async def on_revoked(self, revoked: list[TopicPartition]) -> None:
        """Let in-flight tasks of those partitions finish, commit them, then forget them."""
        gone = set(revoked)
        self.revoking |= gone  # until the new assignment: nothing new starts on these
        await self._finish_inflight(revoked)
        await self.commit(revoked)
        self.held = deque(pair for pair in self.held if pair[0] not in gone)
        self.offsets.forget(revoked)

    async def on_assigned(self, assigned: list[TopicPartition]) -> None:
        self.revoking.clear()
        if assigned:
            log.info("assigned partitions %s", sorted(tp.partition for tp in assigned))
            return
        # More replicas than partitions: say so, with the fix, instead of idling silently.
        try:
            total = await self.client.partition_count(self.topic)
        except (KafkaError, BusError, OSError):
            total = 0
        log.warning(
            "no partition of %s assigned: this replica is idle (the topic has %s partition(s), fewer than "
            "the group's consumers); fix: laddr-sandbox partitions %s <replicas>",
            self.topic, total or "?", self.agent,
        )


class _Rebalance(ConsumerRebalanceListener):
    """aiokafka's callbacks, handed to the consumer."""

    def __init__(self, owner: TopicConsumer):
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        if revoked:
            await self.owner.on_revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.owner.on_assigned(list(assigned))
