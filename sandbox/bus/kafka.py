"""The Kafka backend: a topic per agent, one responses topic, a compacted registry.

Beyond Laddr 0.9.6: a request never joins a consumer group (one long-lived
listener per client follows `laddr.responses` from its end, futures keyed by
task_id), offsets are committed only after the response is published, and the
agent registry lives in a compacted topic so it survives restarts.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any


from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import (
    InvalidPartitionsError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    TopicAlreadyExistsError,
)
from aiokafka.helpers import create_ssl_context

from sandbox.bus.base import (
    Bus,
    BusError,
    BusUnavailable,
    ConsumerInfo,
    DeadLetter,
    Handler,
    MessageTooLarge,
    QueueStats,
    TapMessage,
)
from sandbox.bus.common import (
    Backoff,
    BrokerWatch,
    RepeatFilter,
    ResponseWaiters,
    check_size,
    describe_message,
    tcp_probe,
)
from sandbox.config import Settings
from sandbox.protocol import (
    KAFKA_DLQ,
    KAFKA_REGISTRY,
    KAFKA_RESPONSES,
    KAFKA_TASKS_PREFIX,
    AgentInfo,
    DecodeError,
    Response,
    Task,
    decode_response,
    kafka_group,
    kafka_topic,
)

log = logging.getLogger("sandbox.bus.kafka")

RESPONSES_CACHED = 10_000  # recent responses kept by a client, for get_response()
COMMIT_EVERY_S = 0.1
REVOKE_WAIT_S = 10.0  # how long a rebalance waits for in-flight tasks of revoked partitions
METADATA_MAX_AGE_MS = 5_000
GIVE_UP_AFTER_STOP_S = 10.0  # a stopping worker stops retrying a publish after this


_QUIET = RepeatFilter()


def _quiet_aiokafka() -> None:
    """One line per kind of aiokafka connection error while the broker is away, not ten a second."""
    for name in [n for n in logging.root.manager.loggerDict if n == "aiokafka" or n.startswith("aiokafka.")]:
        logger = logging.getLogger(name)
        if _QUIET not in logger.filters:
            logger.addFilter(_QUIET)


def _unavailable(fn):  # type: ignore[no-untyped-def]
    """Kafka client errors become BusError/BusUnavailable: the API answers 503, the CLI one line."""

    @functools.wraps(fn)
    async def guarded(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return await fn(self, *args, **kwargs)
        except MessageSizeTooLargeError as exc:
            raise MessageTooLarge(f"Kafka refused the message as too large: {exc}") from None
        except (KafkaConnectionError, OSError) as exc:
            raise BusUnavailable(f"lost Kafka at {self.bootstrap}: {exc or type(exc).__name__}") from None
        except KafkaError as exc:
            if getattr(exc, "retriable", False) or isinstance(exc, KafkaTimeoutError):
                raise BusUnavailable(f"Kafka at {self.bootstrap} is not ready: {exc or type(exc).__name__}") from None
            raise BusError(f"Kafka at {self.bootstrap} refused: {exc or type(exc).__name__}") from None

    return guarded


def _addresses(bootstrap: str) -> list[tuple[str, int]]:
    found = []
    for part in bootstrap.split(","):
        host, _, port = part.strip().rpartition(":")
        try:
            found.append((host.strip("[]") or "127.0.0.1", int(port)))
        except ValueError:
            continue
    return found


def _headers(**values: Any) -> list[tuple[str, bytes]]:
    return [(k, str(v).encode()) for k, v in values.items()]


def _header(headers: Any, name: str, default: str = "") -> str:
    for key, value in headers or ():
        if key == name:
            return value.decode(errors="replace") if value is not None else default
    return default


class KafkaBus(Bus):
    backend = "kafka"

    def __init__(self, settings: Settings):
        super().__init__()
        self.settings = settings
        self.bootstrap = settings.kafka_bootstrap
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._waiters = ResponseWaiters()
        self._recent: OrderedDict[str, Response] = OrderedDict()
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._listen_error: BaseException | None = None
        self._registry: dict[str, AgentInfo] = {}
        self._registry_task: asyncio.Task[None] | None = None
        self._registry_ready = asyncio.Event()
        self._closing: list[AIOKafkaConsumer] = []
        self.watch = BrokerWatch(f"Kafka at {self.bootstrap}", self._probe, log)
        self._watch_task: asyncio.Task[None] | None = None
        _quiet_aiokafka()

    async def _probe(self) -> None:
        await tcp_probe(_addresses(self.bootstrap))

    # -- connection settings -------------------------------------------------
    def client_options(self) -> dict[str, Any]:
        sec = self.settings.kafka_security
        options: dict[str, Any] = {"bootstrap_servers": self.bootstrap, "security_protocol": sec.protocol}
        if sec.protocol in ("SSL", "SASL_SSL"):
            options["ssl_context"] = create_ssl_context(
                cafile=sec.ssl_cafile, certfile=sec.ssl_certfile, keyfile=sec.ssl_keyfile
            )
        if sec.protocol.startswith("SASL"):
            options["sasl_mechanism"] = sec.sasl_mechanism or "PLAIN"
            options["sasl_plain_username"] = sec.sasl_username
            options["sasl_plain_password"] = sec.sasl_password
        return options

    def _consumer(self, *topics: str, group: str | None = None, **extra: Any) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            *topics,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if group else "latest",
            **self.client_options(),
            **extra,
        )

    # -- lifecycle ---------------------------------------------------------
    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise BusUnavailable("the Kafka bus is not connected (call connect() first)")
        return self._producer

    async def connect(self) -> None:
        if self._producer is not None:
            return
        # acks=all: an acknowledged message survives the loss of the leader.
        # metadata_max_age_ms: spread tasks over partitions added later within seconds (default: 5 minutes).
        producer = AIOKafkaProducer(acks="all", linger_ms=0, max_request_size=1_048_576,
                                    metadata_max_age_ms=METADATA_MAX_AGE_MS, **self.client_options())
        try:
            await producer.start()
        except (KafkaError, OSError) as exc:
            await producer.stop()
            raise BusUnavailable(f"cannot reach Kafka at {self.bootstrap}: {exc}") from None
        self._producer = producer
        self._watch_task = asyncio.create_task(self.watch.run(), name="kafka-watch")

    async def admin(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            admin = AIOKafkaAdminClient(**self.client_options())
            try:
                await admin.start()
            except (KafkaError, OSError) as exc:
                raise BusUnavailable(f"cannot reach Kafka at {self.bootstrap}: {exc}") from None
            self._admin = admin
        return self._admin

    async def close(self) -> None:
        for task in (self._listener, self._registry_task, self._watch_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._listener = self._registry_task = self._watch_task = None
        self._waiters.fail_all(BusUnavailable("the bus was closed"))
        if self._admin is not None:
            await self._admin.close()
            self._admin = None
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def ping(self) -> bool:
        if await self.watch.unavailable():
            return False
        try:
            await asyncio.wait_for((await self.admin()).list_topics(), 10.0)
            return True
        except (KafkaError, OSError, BusError, asyncio.TimeoutError):
            return False

    @_unavailable
    async def ensure_topology(self, agents: Iterable[str], partitions: int | None = None) -> None:
        """Task topics with N partitions (so replicas share work), responses, DLQ, registry."""
        partitions = partitions or self.settings.kafka_partitions
        admin = await self.admin()
        wanted = [NewTopic(kafka_topic(a), partitions, 1) for a in agents]
        wanted += [
            NewTopic(KAFKA_RESPONSES, partitions, 1),
            NewTopic(KAFKA_DLQ, 1, 1),
            NewTopic(KAFKA_REGISTRY, 1, 1, topic_configs={"cleanup.policy": "compact"}),
        ]
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t.name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
        for topic in wanted[: len(wanted) - 3]:
            if topic.name in existing:
                await self._grow(topic.name, partitions)

    @_unavailable
    async def add_partitions(self, agent: str, total: int) -> int:
        now = await self._grow(kafka_topic(agent), total)
        if self._producer is not None:  # this client sends to the new partitions at once
            await self._producer.client.force_metadata_update()
        return now

    async def _grow(self, topic: str, total: int) -> int:
        """Grow a topic to `total` partitions (Kafka never shrinks one); returns the count after."""
        current = await self._partition_count(topic)
        if current and current < total:
            try:
                await (await self.admin()).create_partitions({topic: NewPartitions(total_count=total)})
            except InvalidPartitionsError:  # another replica, starting at the same time, grew it first
                return await self._partition_count(topic)
            return total
        return current

    async def _partition_count(self, topic: str) -> int:
        return len(await self._partitions(topic))

    @_unavailable
    async def channels(self) -> list[str]:
        topics = await (await self.admin()).list_topics()
        return sorted(t for t in topics if t.startswith(KAFKA_TASKS_PREFIX) or t == KAFKA_RESPONSES)

    # -- tasks and responses -------------------------------------------------
    async def _send(self, topic: str, raw: bytes, key: str | None, headers: list[tuple[str, bytes]] | None = None) -> None:
        check_size(raw)
        down = await self.watch.unavailable()
        if down:  # fail at once (the API: 503) instead of waiting out the producer's timeout
            raise BusUnavailable(down)
        try:
            await self.producer.send_and_wait(topic, raw, key=key.encode() if key else None, headers=headers)
        except MessageSizeTooLargeError as exc:
            raise MessageTooLarge(f"Kafka refused a {len(raw):,}-byte message: {exc}") from None
        except (KafkaConnectionError, KafkaTimeoutError) as exc:
            raise BusUnavailable(f"lost Kafka at {self.bootstrap}: {exc or type(exc).__name__}") from None

    @_unavailable
    async def publish_task(self, agent: str, payload: Any, *, task_id: str | None = None) -> Task:
        task = Task(agent_name=agent, payload=payload)
        if task_id:
            task.task_id = task_id
        await self._send(kafka_topic(agent), task.encode(), task.task_id)
        return task

    @_unavailable
    async def publish_raw(self, agent: str, raw: bytes, *, key: str | None = None) -> None:
        await self._send(kafka_topic(agent), raw, key)

    @_unavailable
    async def publish_response(self, response: Response) -> None:
        await self._send(KAFKA_RESPONSES, response.encode(), response.task_id)

    async def _expect(self, task_id: str) -> asyncio.Future[Response]:
        await self._ensure_listener()
        return self._waiters.add(task_id)

    def _forget(self, task_id: str) -> None:
        self._waiters.discard(task_id)

    async def wait_for_response(self, task_id: str, timeout: float) -> Response:
        waiter = await self._expect(task_id)
        try:
            known = self._recent.get(task_id)
            if known is not None:
                return known
            return await self._await_response(waiter, task_id, "?", timeout)
        finally:
            self._forget(task_id)

    @_unavailable
    async def get_response(self, task_id: str) -> Response | None:
        await self._ensure_listener()
        return self._recent.get(task_id)

    async def _ensure_listener(self) -> None:
        if self._listener is None or self._listener.done():
            self._listening.clear()
            self._listener = asyncio.create_task(self._listen(), name="kafka-response-listener")
        await self._listening.wait()
        if self._listen_error is not None:
            error, self._listen_error = self._listen_error, None
            raise BusUnavailable(f"cannot follow {KAFKA_RESPONSES}: {error}")

    async def _listen(self) -> None:
        """Follow every partition of laddr.responses from its end; no group, no join."""
        consumer = self._consumer(fetch_max_wait_ms=100)
        try:
            await consumer.start()
            partitions = await self._wait_partitions(consumer, KAFKA_RESPONSES)
            consumer.assign(partitions)
            await consumer.seek_to_end(*partitions)
            for tp in partitions:  # pin the positions before any request goes out
                await consumer.position(tp)
        except (KafkaError, OSError, BusError) as exc:
            self._listen_error = exc
            self._listening.set()
            await consumer.stop()
            return
        except BaseException:
            await consumer.stop()
            raise
        self._listening.set()
        backoff = Backoff()
        try:
            while True:
                try:
                    batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
                except KafkaError as exc:  # keep our positions: nothing published meanwhile is missed
                    log.warning("response listener: %s; retrying in %.1fs", exc or type(exc).__name__, backoff.delay)
                    await backoff.sleep()
                    continue
                backoff.reset()
                for records in batches.values():
                    for record in records:
                        self._deliver(record.value)
        finally:
            await consumer.stop()

    def _deliver(self, raw: bytes) -> None:
        try:
            response = decode_response(raw)
        except DecodeError:
            return
        self._recent[response.task_id] = response
        if len(self._recent) > RESPONSES_CACHED:
            self._recent.popitem(last=False)
        self._waiters.resolve(response)

    async def _partitions(self, topic: str) -> list[TopicPartition]:
        described = await (await self.admin()).describe_topics([topic])
        for entry in described:
            if entry.get("topic") == topic and not entry.get("error_code"):
                return [TopicPartition(topic, p["partition"]) for p in sorted(entry["partitions"], key=lambda p: p["partition"])]
        return []

    async def _wait_partitions(self, consumer: AIOKafkaConsumer, topic: str, timeout: float = 30.0) -> list[TopicPartition]:
        """The partitions of a topic, creating the topology if it does not exist yet."""
        deadline = time.monotonic() + timeout
        while True:
            found = await self._partitions(topic)
            if found:
                return found
            if time.monotonic() > deadline:
                raise BusUnavailable(f"topic {topic} does not exist on {self.bootstrap}")
            await self.ensure_topology([])
            await asyncio.sleep(0.2)

    @staticmethod
    async def _records_until(
        consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int], timeout: float = 30.0
    ) -> AsyncIterator[Any]:
        """Records from the consumer's positions up to `ends` (exclusive), then stop."""
        deadline = time.monotonic() + timeout
        while True:
            behind = [tp for tp in ends if await consumer.position(tp) < ends[tp]]
            if not behind:
                return
            if time.monotonic() > deadline:
                raise BusUnavailable(f"timed out reading {behind[0].topic} up to its end")
            batches = await consumer.getmany(*behind, timeout_ms=500, max_records=5000)
            for tp, records in batches.items():
                for record in records:
                    if record.offset < ends[tp]:
                        yield record

    # -- consuming ---------------------------------------------------------
    async def serve(
        self,
        agent: str,
        consumer: str,
        handler: Handler,
        *,
        concurrency: int = 8,
        stop: asyncio.Event,
    ) -> None:
        from sandbox.bus.kafka_worker import TopicConsumer  # here, not at the top: that module builds on this one

        await TopicConsumer(self, agent, consumer, handler, concurrency).run(stop)

    async def dead_letter(self, source: str, raw: bytes, reason: str, delivery_count: int, key: str | None) -> None:
        await self._send(
            KAFKA_DLQ, raw, key, _headers(reason=reason, source=source, delivery_count=delivery_count)
        )

    # -- registry ------------------------------------------------------------
    @_unavailable
    async def register_agent(self, info: AgentInfo) -> None:
        await self._send(KAFKA_REGISTRY, info.to_json(), info.name)

    async def agents(self) -> dict[str, AgentInfo]:
        if self._registry_task is None or self._registry_task.done():
            self._registry_ready.clear()
            self._registry_task = asyncio.create_task(self._follow_registry(), name="kafka-registry")
        await self._registry_ready.wait()
        if self._registry_task.done() and self._registry_task.exception() is not None:
            raise BusUnavailable(f"cannot read {KAFKA_REGISTRY}: {self._registry_task.exception()}")
        return dict(sorted(self._registry.items()))

    async def _follow_registry(self) -> None:
        """Read the compacted registry from the start, then keep following it."""
        consumer = self._consumer()
        try:
            await consumer.start()
            partitions = await self._wait_partitions(consumer, KAFKA_REGISTRY)
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            backoff = Backoff()
            while True:
                try:
                    batches = await consumer.getmany(timeout_ms=200, max_records=1000)
                except KafkaError as exc:  # the registry we have stays; follow again once Kafka is back
                    log.warning("registry follower: %s; retrying in %.1fs", exc or type(exc).__name__, backoff.delay)
                    await backoff.sleep()
                    continue
                backoff.reset()
                for records in batches.values():
                    for record in records:
                        self._apply_registry(record.key, record.value)
                if not self._registry_ready.is_set():
                    positions = {tp: await consumer.position(tp) for tp in partitions}
                    if all(positions[tp] >= ends[tp] for tp in partitions):
                        self._registry_ready.set()
        finally:
            self._registry_ready.set()
            await consumer.stop()

    def _apply_registry(self, key: bytes | None, value: bytes | None) -> None:
        if not key:
            return
        name = key.decode(errors="replace")
        if value is None:  # a tombstone removes the agent
            self._registry.pop(name, None)
            return
        try:
            self._registry[name] = AgentInfo.from_json(name, value)
        except DecodeError:
            log.warning("registry entry %r is not JSON; ignored", name)

    # -- inspection ----------------------------------------------------------
    @_unavailable
    async def queue_stats(self, agents: Iterable[str]) -> list[QueueStats]:
        agents = list(agents)
        consumer = self._consumer()
        await consumer.start()
        try:
            return [await self._stats(consumer, agent) for agent in agents]
        finally:
            await consumer.stop()

    async def _stats(self, consumer: AIOKafkaConsumer, agent: str) -> QueueStats:
        topic, group = kafka_topic(agent), kafka_group(agent)
        stats = QueueStats(agent=agent, channel=topic)
        partitions = await self._partitions(topic)
        if not partitions:
            stats.exists = False
            return stats
        stats.partitions = len(partitions)
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        committed = await self._committed_offsets(group, partitions)
        stats.length = sum(ends[tp] - starts[tp] for tp in partitions)
        for tp in partitions:
            done = committed.get(tp)
            offset = done.offset if done is not None and done.offset >= 0 else starts[tp]
            stats.lag += max(0, ends[tp] - offset)
        stats.consumers = await self._members(group, topic)
        return stats

    async def _committed_offsets(self, group: str, partitions: list[TopicPartition], timeout: float = 15.0) -> dict:
        """A group's committed offsets, waiting out a coordinator that is still loading (a fresh broker)."""
        backoff = Backoff(first=0.2, most=1.0)
        deadline = time.monotonic() + timeout
        while True:
            try:
                return await (await self.admin()).list_consumer_group_offsets(group, partitions=partitions)
            except KafkaError as exc:
                if not getattr(exc, "retriable", False) or time.monotonic() > deadline:
                    raise
                await backoff.sleep()

    async def _wait_group_empty(self, group: str, topic: str, timeout: float = 30.0) -> None:
        """Commits from outside the group are refused while it has members: wait for the last to go.

        A worker killed with -9 stays a member until its session times out (10 s).
        """
        deadline = time.monotonic() + timeout
        while True:
            members = await self._members(group, topic)
            if not members:
                return
            if time.monotonic() > deadline:
                names = ", ".join(m.name for m in members)
                raise BusError(f"consumer group {group} still has members ({names}): stop its workers first")
            log.info("waiting for %d member(s) of %s to leave or time out", len(members), group)
            await asyncio.sleep(1.0)

    async def _members(self, group: str, topic: str) -> list[ConsumerInfo]:
        """Who is in the group and which partitions each owns."""
        members: list[ConsumerInfo] = []
        for response in await (await self.admin()).describe_consumer_groups([group]):
            for described in response.groups:
                for member in described[5]:  # (member_id, [instance_id,] client_id, host, metadata, assignment)
                    client_id, assignment = member[-4], member[-1]
                    owned: list[int] = []
                    if assignment:
                        decoded = ConsumerProtocolMemberAssignment.decode(assignment)
                        owned = sorted(p for t, ps in decoded.assignment if t == topic for p in ps)
                    members.append(ConsumerInfo(name=client_id, partitions=owned))
        return sorted(members, key=lambda c: c.name)

    async def tap(self, *, last: int = 0) -> AsyncIterator[TapMessage]:  # type: ignore[override]
        """Every partition of every laddr.* topic (but the registry), from the end."""
        consumer = self._consumer(fetch_max_wait_ms=100)
        await consumer.start()
        try:
            assigned = await self._tap_assign(consumer, set(), last)
            if last > 0:
                for message in await self._tap_replay(consumer, assigned, last):
                    yield message
            next_scan = time.monotonic() + 5.0
            backoff = Backoff()
            while True:
                try:
                    if time.monotonic() >= next_scan:  # topics of agents that appeared later
                        assigned = await self._tap_assign(consumer, assigned, 0, new_from_start=True)
                        next_scan = time.monotonic() + 5.0
                    batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                except (KafkaError, BusError, OSError) as exc:  # go on from our positions once Kafka is back
                    log.warning("tap: %s; retrying in %.1fs", exc or type(exc).__name__, backoff.delay)
                    await backoff.sleep()
                    continue
                backoff.reset()
                for records in batches.values():
                    for record in records:
                        yield self._tap_message(record)
        finally:
            await consumer.stop()

    async def _tap_assign(
        self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition], last: int, new_from_start: bool = False
    ) -> set[TopicPartition]:
        topics = [t for t in await (await self.admin()).list_topics()
                  if t.startswith(KAFKA_TASKS_PREFIX) or t in (KAFKA_RESPONSES, KAFKA_DLQ)]
        wanted = {tp for t in topics for tp in await self._partitions(t)}
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

    async def _tap_replay(self, consumer: AIOKafkaConsumer, partitions: set[TopicPartition], last: int) -> list[TapMessage]:
        """Up to `last` messages per partition were rewound; keep the newest `last` overall."""
        ends = await consumer.end_offsets(sorted(partitions))
        found = [self._tap_message(r) async for r in self._records_until(consumer, ends)]
        found.sort(key=lambda m: m.timestamp)
        return found[-last:]

    def _tap_message(self, record: Any) -> TapMessage:
        kind = "response" if record.topic == KAFKA_RESPONSES else "dlq" if record.topic == KAFKA_DLQ else "task"
        message = describe_message(
            record.topic, kind, record.value or b"", record.timestamp / 1000.0, f"{record.partition}:{record.offset}"
        )
        if kind == "dlq":
            message.status = "dead: " + _header(record.headers, "reason")
        return message

    @_unavailable
    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        consumer = self._consumer()
        await consumer.start()
        try:
            partitions = await self._wait_partitions(consumer, KAFKA_DLQ)
            consumer.assign(partitions)
            ends = await consumer.end_offsets(partitions)
            starts = await consumer.beginning_offsets(partitions)
            for tp in partitions:
                consumer.seek(tp, max(starts[tp], ends[tp] - limit))
            letters = [
                DeadLetter(
                    id=f"{r.partition}:{r.offset}",
                    source=_header(r.headers, "source"),
                    reason=_header(r.headers, "reason"),
                    delivery_count=int(_header(r.headers, "delivery_count", "0") or 0),
                    raw=r.value or b"",
                    timestamp=r.timestamp / 1000.0,
                )
                async for r in self._records_until(consumer, ends)
            ]
            return list(reversed(letters))[:limit]
        finally:
            await consumer.stop()

    @_unavailable
    async def requeue_dead_letter(self, dead: DeadLetter) -> None:
        # A Kafka log cannot delete one record: the replayed copy is what counts.
        await self._send(dead.source, dead.raw, None, _headers(requeued_from=dead.id))

    # -- migration -----------------------------------------------------------
    @_unavailable
    async def drain_pending(self, agent: str, sink: Callable[[bytes], Awaitable[None]]) -> int:
        """From the group's committed offsets to the end, without joining the group."""
        topic, group = kafka_topic(agent), kafka_group(agent)
        if not await self._partitions(topic):
            return 0
        await self._wait_group_empty(group, topic)
        consumer = self._consumer(group=group)
        await consumer.start()
        moved = 0
        try:
            partitions = await self._partitions(topic)
            if not partitions:
                return 0
            consumer.assign(partitions)
            ends = await consumer.end_offsets(partitions)
            starts = await consumer.beginning_offsets(partitions)
            for tp in partitions:
                done = await consumer.committed(tp)
                consumer.seek(tp, done if done is not None and done >= 0 else starts[tp])
            async for record in self._records_until(consumer, ends, timeout=300.0):
                await sink(record.value or b"")
                moved += 1
                await consumer.commit({TopicPartition(record.topic, record.partition): record.offset + 1})
            return moved
        finally:
            await consumer.stop()
