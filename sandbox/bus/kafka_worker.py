"""The worker side of the Kafka bus: consume an agent's topic, answer each task, then commit."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from sandbox.bus.base import BusError, Handler
from sandbox.bus.common import Backoff, answer
from sandbox.bus.kafka import COMMIT_EVERY_S, GIVE_UP_AFTER_STOP_S, METADATA_MAX_AGE_MS, REVOKE_WAIT_S, KafkaBus, log
from sandbox.protocol import KAFKA_DLQ, DecodeError, decode_task, kafka_group, kafka_topic


class TopicConsumer:
    """One worker's loop on one agent's topic: fetch, handle, answer, then commit.

    Kafka keeps no delivery count, so the commit's metadata carries one: how far
    this member had fetched ("upto") and how often the oldest open task had been
    delivered ("n"). The next owner of the partition reads it and knows which
    tasks are redeliveries, so a task that crashes every worker is given up.
    """

    def __init__(self, bus: KafkaBus, agent: str, name: str, handler: Handler, concurrency: int):
        self.bus = bus
        self.agent = agent
        self.topic = kafka_topic(agent)
        self.group = kafka_group(agent)
        self.name = name
        self.handler = handler
        self.concurrency = max(1, concurrency)
        self.max_deliveries = bus.settings.max_deliveries
        self.inflight: dict[tuple[TopicPartition, int], asyncio.Task[None]] = {}
        # Per partition: offset -> delivery count of tasks being worked on, and
        # the offset after the last one fetched.
        self.open: dict[TopicPartition, dict[int, int]] = {}
        self.fetched: dict[TopicPartition, int] = {}
        self.committed: dict[TopicPartition, tuple[int, str]] = {}
        # What the previous owner left: (committed offset, fetched up to, its count).
        self.previous: dict[TopicPartition, tuple[int, int, int]] = {}
        self.consumer: AIOKafkaConsumer | None = None
        self.stop = asyncio.Event()
        self.held: deque[tuple[TopicPartition, Any]] = deque()  # redeliveries waiting to run alone
        # Records handed to the handler (or about to be, right after the next commit).
        self.attempting: set[tuple[TopicPartition, int]] = set()
        self.revoking: set[TopicPartition] = set()  # no new work starts on these during a rebalance

    def delivery_count(self, tp: TopicPartition, offset: int) -> int:
        committed, upto, count = self.previous.get(tp, (0, 0, 0))
        if offset == committed and upto > committed:
            return count + 1
        return 2 if committed < offset < upto else 1

    def committable(self) -> dict[TopicPartition, tuple[int, str]]:
        """Per partition the next offset to read (nothing below it is unanswered) and the metadata."""
        offsets = {}
        for tp, after in self.fetched.items():
            open_offsets = self.open.get(tp) or {}
            offset = min(open_offsets) if open_offsets else after
            count = open_offsets.get(offset, 0)
            if count and (tp, offset) not in self.attempting:
                count -= 1  # held back, not tried yet: its next owner must not count this as a delivery
            metadata = orjson.dumps({"upto": after, "n": count, "by": self.name}).decode()
            if self.committed.get(tp) != (offset, metadata):
                offsets[tp] = (offset, metadata)
        return offsets

    async def commit(self, only: Iterable[TopicPartition] | None = None) -> None:
        offsets = self.committable()
        if only is not None:
            keep = set(only)
            offsets = {tp: o for tp, o in offsets.items() if tp in keep}
        if not offsets or self.consumer is None:
            return
        try:
            await self.consumer.commit(offsets)
            self.committed.update(offsets)
        except KafkaError as exc:  # e.g. during a rebalance: the next commit catches up
            log.warning("offset commit failed (%s); will retry", exc)

    async def learn_previous(self, assigned: Iterable[TopicPartition]) -> None:
        """Read what the partitions' previous owner committed, for delivery counts."""
        assigned = list(assigned)
        if not assigned:
            return
        try:
            found = await self.bus._committed_offsets(self.group, assigned, timeout=5.0)
        except (KafkaError, BusError) as exc:
            log.warning("cannot read committed offsets (%s); delivery counts start at 1", exc)
            return
        for tp in assigned:
            self.previous[tp] = (-1, 0, 0)
        for tp, meta in found.items():
            try:
                doc = orjson.loads(meta.metadata or "{}")
                self.previous[tp] = (meta.offset, int(doc.get("upto", 0)), int(doc.get("n", 0)))
            except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
                continue

    async def run(self, stop: asyncio.Event) -> None:
        self.stop = stop
        backoff = Backoff()
        while not stop.is_set():
            self.consumer = self.bus._consumer(
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
                self.open.clear()
                self.fetched.clear()
                self.committed.clear()
                self.held.clear()
                self.attempting.clear()
                self.revoking.clear()

    async def _loop(self, stop: asyncio.Event) -> None:
        assert self.consumer is not None
        next_commit = time.monotonic() + COMMIT_EVERY_S
        while not stop.is_set():
            free = self.concurrency - len(self.inflight)
            if self.held:  # nothing new is fetched until every held record had its turn alone
                await self._run_held_alone()
                if self.inflight:
                    await asyncio.wait(self.inflight.values(), return_when=asyncio.FIRST_COMPLETED, timeout=0.2)
            elif free <= 0:
                await asyncio.wait(self.inflight.values(), return_when=asyncio.FIRST_COMPLETED, timeout=0.2)
            else:
                batches = await self.consumer.getmany(timeout_ms=200, max_records=free)
                # Fetching may start before the rebalance callback ran: learn here.
                await self.learn_previous([tp for tp in batches if tp not in self.previous])
                # A rebalance may run at any await: keep only partitions still ours.
                owned = self.consumer.assignment()
                batches = {tp: records for tp, records in batches.items() if tp in owned and tp not in self.revoking}
                for tp, records in batches.items():
                    for record in records:
                        self._track(tp, record)
                if batches:
                    # Record what we take before working on it (the commit below): a
                    # task that kills its worker is then known as a redelivery by the next.
                    fetched = [(tp, r) for tp, records in batches.items() for r in records]
                    if any(self.open[tp][r.offset] > 1 for tp, r in fetched):
                        # The previous owner died with some of these in flight: one may be
                        # what killed it. Run them one by one, so that only the culprit
                        # counts its deliveries up and its neighbours are answered.
                        self.held.extend(sorted(fetched, key=lambda pair: (pair[0].partition, pair[1].offset)))
                        await self.commit()  # not attempted: their counts stay as they are
                    else:
                        self.attempting.update((tp, r.offset) for tp, r in fetched)
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
            if record.offset not in self.open.get(tp, {}):  # revoked meanwhile
                continue
            self.attempting.add((tp, record.offset))
            await self.commit()
            self._start(tp, record)
            return

    def _track(self, tp: TopicPartition, record: Any) -> None:
        self.open.setdefault(tp, {})[record.offset] = self.delivery_count(tp, record.offset)
        self.fetched[tp] = max(self.fetched.get(tp, 0), record.offset + 1)

    def _start(self, tp: TopicPartition, record: Any) -> None:
        if tp in self.revoking or record.offset not in self.open.get(tp, {}):
            return  # its partition is being (or was) handed over: the next owner does it
        count = self.open[tp][record.offset]
        task = asyncio.create_task(self._handle(tp, record, count))
        self.inflight[(tp, record.offset)] = task

        def done(_: asyncio.Task[None], key: tuple[TopicPartition, int] = (tp, record.offset)) -> None:
            self.inflight.pop(key, None)

        task.add_done_callback(done)

    async def _handle(self, tp: TopicPartition, record: Any, count: int) -> None:
        raw = record.value or b""
        key = record.key.decode(errors="replace") if record.key else None
        try:
            task = decode_task(raw)
        except DecodeError as exc:
            reason = str(exc)
            log.warning("message %s:%d on %s sent to %s: %s", tp.partition, record.offset, self.topic, KAFKA_DLQ, reason)
            if await self._retrying(lambda: self.bus.dead_letter(self.topic, raw, reason, count, key)):
                self._done(tp, record.offset)
            return
        if count > 1:
            log.info("task %s redelivered (delivery %d)", task.task_id, count)
        response, dead = await answer(self.handler, task, count, self.max_deliveries)
        if dead:
            attempts = response.delivery_count or count
            if not await self._retrying(lambda: self.bus.dead_letter(self.topic, raw, dead, attempts, key)):
                return
        if await self._retrying(lambda: self.bus.publish_response(response)):
            self._done(tp, record.offset)

    async def _retrying(self, send: Callable[[], Awaitable[None]]) -> bool:
        """Publishing must not give up while the broker restarts: the task stays open.

        A worker told to stop gives up after GIVE_UP_AFTER_STOP_S; the offset is
        then not committed and the partition's next owner does the task again.
        """
        backoff = Backoff()
        attempt = 0
        stopping_since: float | None = None
        while True:
            try:
                await send()
                if attempt:
                    log.info("published after %d retries", attempt)
                return True
            except (BusError, KafkaError) as exc:
                if self.stop.is_set():
                    stopping_since = stopping_since or time.monotonic()
                    if time.monotonic() - stopping_since > GIVE_UP_AFTER_STOP_S:
                        log.warning("not published before stopping (%s); left uncommitted for the next owner", exc)
                        return False
                attempt += 1
                log.log(logging.WARNING if attempt == 1 else logging.DEBUG,
                        "publish failed (%s); retrying until Kafka takes it", exc or type(exc).__name__)
                if self.bus.watch.reachable:
                    await backoff.sleep()
                else:  # retry the moment the broker is back, not up to a backoff later
                    await self.bus.watch.wait_up(backoff._advance())

    def _done(self, tp: TopicPartition, offset: int) -> None:
        self.attempting.discard((tp, offset))
        open_offsets = self.open.get(tp)
        if open_offsets is not None:
            open_offsets.pop(offset, None)

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


class _Rebalance(ConsumerRebalanceListener):
    """On revoke: let in-flight tasks of those partitions finish, then commit them."""

    def __init__(self, owner: TopicConsumer):
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        if not revoked:
            return
        gone = set(revoked)
        self.owner.revoking |= gone  # until the new assignment: nothing new starts on these
        await self.owner._finish_inflight(revoked)
        await self.owner.commit(revoked)
        self.owner.held = deque(pair for pair in self.owner.held if pair[0] not in gone)
        self.owner.attempting = {key for key in self.owner.attempting if key[0] not in gone}
        for tp in revoked:
            self.owner.open.pop(tp, None)
            self.owner.fetched.pop(tp, None)
            self.owner.committed.pop(tp, None)
            self.owner.previous.pop(tp, None)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        owner = self.owner
        owner.revoking.clear()
        if assigned:
            log.info("assigned partitions %s", sorted(tp.partition for tp in assigned))
            return
        # More replicas than partitions: say so, with the fix, instead of idling silently.
        try:
            total = await owner.bus._partition_count(owner.topic)
        except (KafkaError, BusError, OSError):
            total = 0
        log.warning(
            "no partition of %s assigned: this replica is idle (the topic has %s partition(s), fewer than "
            "the group's consumers); fix: laddr-sandbox partitions %s <replicas>",
            owner.topic, total or "?", owner.agent,
        )
