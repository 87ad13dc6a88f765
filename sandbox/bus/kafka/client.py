"""The Kafka connection both sides share, and the one module that imports aiokafka.

The producer, consumers, the admin client and the questions asked with it
(partitions, committed offsets, group members), plus aiokafka's names the
rest of the backend needs, re-exported from here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import (
    InvalidPartitionsError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NodeNotReadyError,
    RequestTimedOutError,
    TopicAlreadyExistsError,
)
from aiokafka.helpers import create_ssl_context

from sandbox.bus.base import BusError, BusNotConnected, BusUnavailable, ConsumerInfo, MessageTooLarge, translate_errors
from sandbox.bus.delivery import check_size
from sandbox.bus.kafka.health import PartitionHealth, answering_brokers, live_broker_ids, partition_health
from sandbox.bus.kafka.quiet import quiet_aiokafka
from sandbox.bus.kafka.sticky import StickyPartitions
from sandbox.bus.reconnect import Backoff, BrokerWatch, tcp_probe, until_answered
from sandbox.config import Settings
from sandbox.protocol import KAFKA_DLQ, KAFKA_REGISTRY, KAFKA_RESPONSES, Response

__all__ = [
    # aiokafka's names the rest of the backend uses, so that it need not import aiokafka itself
    "AIOKafkaConsumer", "ConsumerRebalanceListener", "KafkaError", "TopicPartition",
    "KafkaClient", "METADATA_MAX_AGE_MS", "addresses", "header", "headers", "log", "unavailable",
]

log = logging.getLogger("sandbox.bus.kafka")
T = TypeVar("T")

METADATA_MAX_AGE_MS = 5_000  # see partitions added later within seconds (aiokafka's default: 5 minutes)
# With idempotence aiokafka retries NotEnoughReplicas / no leader forever: a send
# gives up after this long with a reason, and a stop without quorum is bounded too.
SEND_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0

def _refused(owner: Any, exc: Exception) -> BusError | None:
    if isinstance(exc, MessageSizeTooLargeError):
        return MessageTooLarge(f"Kafka refused the message as too large: {exc}")
    if isinstance(exc, (KafkaConnectionError, OSError)):
        return BusUnavailable(f"lost Kafka at {owner.bootstrap}: {exc or type(exc).__name__}")
    if isinstance(exc, KafkaError):
        if getattr(exc, "retriable", False) or isinstance(exc, KafkaTimeoutError):
            return BusUnavailable(f"Kafka at {owner.bootstrap} is not ready: {exc or type(exc).__name__}")
        return BusError(f"Kafka at {owner.bootstrap} refused: {exc or type(exc).__name__}")
    return None


# Kafka client errors become BusError/BusUnavailable: the API answers 503, the CLI one line.
# For methods of objects with a `bootstrap`: the client, the bus, the inspector.
unavailable = translate_errors(_refused)


def addresses(bootstrap: str) -> list[tuple[str, int]]:
    found = []
    for part in bootstrap.split(","):
        host, _, port = part.strip().rpartition(":")
        try:
            found.append((host.strip("[]") or "127.0.0.1", int(port)))
        except ValueError:
            continue
    return found


def headers(**values: Any) -> list[tuple[str, bytes]]:
    return [(k, str(v).encode()) for k, v in values.items()]


def header(record_headers: Any, name: str, default: str = "") -> str:
    for key, value in record_headers or ():
        if key == name:
            return value.decode(errors="replace") if value is not None else default
    return default


class KafkaClient:
    """One producer and one admin client, shared by a bus and its consumers; other consumers made to measure."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.bootstrap = settings.kafka_bootstrap
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self.watch = BrokerWatch(f"Kafka at {self.bootstrap}", self._probe, log)
        self._watch_task: asyncio.Task[None] | None = None
        self._sticky = StickyPartitions()
        quiet_aiokafka()

    async def _probe(self) -> None:
        await tcp_probe(addresses(self.bootstrap))

    def options(self) -> dict[str, Any]:
        """Connection settings every aiokafka client gets (security from KAFKA_* settings)."""
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

    def consumer(self, *topics: str, group: str | None = None, **extra: Any) -> AIOKafkaConsumer:
        """Not started. With a group: from its committed offsets (else the start); without: from the end."""
        return AIOKafkaConsumer(
            *topics,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if group else "latest",
            **self.options(),
            **extra,
        )

    # -- lifecycle ---------------------------------------------------------
    @property
    def producer(self) -> AIOKafkaProducer:
        self.check_connected()
        return self._producer  # type: ignore[return-value]  # checked just above

    def check_connected(self) -> None:
        """BusNotConnected before connect() and after close(): readers with consumers of their own stop then."""
        if self._producer is None:
            raise BusNotConnected("the Kafka bus is not connected (call connect() first; a closed bus stays closed)")

    async def connect(self) -> None:
        if self._producer is not None:
            return
        # acks=all: an acknowledged message survives the loss of the leader; idempotence:
        # a send retried after a lost acknowledgement is written once, not twice.
        producer = AIOKafkaProducer(acks="all", enable_idempotence=True, linger_ms=0, max_request_size=1_048_576,
                                    metadata_max_age_ms=METADATA_MAX_AGE_MS, **self.options())
        try:
            await producer.start()
        except (KafkaError, OSError) as exc:
            await producer.stop()
            raise BusUnavailable(f"cannot reach Kafka at {self.bootstrap}: {exc}") from None
        self._producer = producer
        self._watch_task = asyncio.create_task(self.watch.run(), name="kafka-watch")

    async def admin(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            admin = AIOKafkaAdminClient(**self.options())
            try:
                await admin.start()
            except (KafkaError, OSError) as exc:
                raise BusUnavailable(f"cannot reach Kafka at {self.bootstrap}: {exc}") from None
            self._admin = admin
        return self._admin

    async def close(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
            await asyncio.gather(self._watch_task, return_exceptions=True)
            self._watch_task = None
        if self._admin is not None:
            await self._admin.close()
            self._admin = None
        if self._producer is not None:
            producer, self._producer = self._producer, None
            try:  # without quorum the final flush never completes: what is unsent stays unacknowledged
                await asyncio.wait_for(producer.stop(), STOP_TIMEOUT_S)
            except (TimeoutError, asyncio.TimeoutError, KafkaError, OSError):
                log.warning("Kafka producer at %s did not stop within %.0fs; dropped", self.bootstrap, STOP_TIMEOUT_S)

    async def ask(self, question: Callable[[AIOKafkaAdminClient], Awaitable[T]], timeout: float = 15.0) -> T:
        """An admin request, retried while it lands on a dead node: aiokafka's admin sends each
        request to a random broker of its metadata, which names a killed one for a few seconds."""
        deadline = time.monotonic() + timeout
        backoff = Backoff(first=0.2, most=1.0)
        while True:
            admin = await self.admin()
            try:
                return await question(admin)
            except (KafkaConnectionError, NodeNotReadyError, RequestTimedOutError):
                if time.monotonic() > deadline:
                    raise
                await admin._client.force_metadata_update()  # noqa: SLF001 - drop the dead node
                await backoff.sleep()

    async def list_topics(self) -> list[str]:
        return list(await self.ask(lambda admin: admin.list_topics()))

    # -- producing ---------------------------------------------------------
    async def send(self, topic: str, raw: bytes, key: str | None, hdrs: list[tuple[str, bytes]] | None = None,
                   *, sticky: bool = False) -> None:
        """`sticky`: the key does not choose the partition (tasks, answers; see sticky.py)."""
        check_size(raw)
        if not self.watch.reachable:
            down = await self.watch.unavailable()
            if down:  # fail at once (the API: 503) instead of waiting out the producer's timeout
                raise BusUnavailable(down)
        producer = self.producer
        partition = self._sticky.choose(producer.client.cluster, topic) if sticky else None
        try:  # asyncio.timeout: no task wrapped around each send (wait_for makes one)
            async with asyncio.timeout(SEND_TIMEOUT_S):
                sent = await producer.send(topic, raw, key=key.encode() if key else None, partition=partition,
                                           headers=hdrs)
                await sent
        except (TimeoutError, asyncio.TimeoutError):
            raise BusUnavailable(await self._why_not_written(topic)) from None
        except MessageSizeTooLargeError as exc:
            raise MessageTooLarge(f"Kafka refused a {len(raw):,}-byte message: {exc}") from None
        except (KafkaConnectionError, KafkaTimeoutError) as exc:
            raise BusUnavailable(f"lost Kafka at {self.bootstrap}: {exc or type(exc).__name__}") from None

    @unavailable
    async def publish_response(self, response: Response) -> None:
        await self.send(KAFKA_RESPONSES, response.encode(), response.task_id, sticky=True)

    async def _why_not_written(self, topic: str) -> str:
        answering = await answering_brokers(self.bootstrap)
        total = len(addresses(self.bootstrap))
        return (f"Kafka has too few in-sync replicas / no leader for {topic}: {answering} of {total} brokers"
                f" answer at {self.bootstrap}; nothing was acknowledged after {SEND_TIMEOUT_S:.0f}s")

    async def dead_letter(self, source: str, raw: bytes, reason: str, delivery_count: int, key: str | None,
                          origin: str = "") -> None:
        """`origin` (topic/partition/offset of the failed record) lets the DLQ reader drop a second
        copy: one written before a commit that failed, then again by the next owner of the partition."""
        await self.send(KAFKA_DLQ, raw, key, headers(reason=reason, source=source, delivery_count=delivery_count,
                                                     origin=origin))

    async def refresh_metadata(self) -> None:
        """This client sends to partitions added a moment ago at once."""
        if self._producer is not None:
            await self._producer.client.force_metadata_update()

    # -- topics --------------------------------------------------------------
    @unavailable
    async def ensure_topics(self, topics: list[str], partitions: int) -> None:
        """Task topics with N partitions (so replicas share work), responses, DLQ, registry."""
        admin = await self.admin()
        rf, configs = await self.replication()
        wanted = [NewTopic(t, partitions, rf, topic_configs=configs) for t in topics]
        wanted += [
            NewTopic(KAFKA_RESPONSES, partitions, rf, topic_configs=configs),
            NewTopic(KAFKA_DLQ, 1, rf, topic_configs=configs),
            NewTopic(KAFKA_REGISTRY, 1, rf, topic_configs={"cleanup.policy": "compact", **configs}),
        ]
        existing = set(await self.list_topics())
        missing = [t for t in wanted if t.name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
        for topic in wanted[: len(wanted) - 3]:
            if topic.name in existing:
                await self.grow(topic.name, partitions)

    async def replication(self) -> tuple[int, dict[str, str]]:
        """Replication factor min(3, brokers) and min.insync.replicas RF-1 (2 of 3): acks=all
        writes survive one broker's loss and stop, with a reason, at two."""
        client = (await self.admin())._client  # noqa: SLF001 - the admin's own metadata
        await client.force_metadata_update()
        # the configured nodes, not only those up now: a topic made while one is down keeps RF 3
        rf = max(1, min(3, max(self.settings.kafka_brokers, len(client.cluster.brokers()))))
        return rf, ({"min.insync.replicas": str(rf - 1)} if rf > 2 else {})

    async def cluster_health(self, topics: list[str]) -> list[PartitionHealth]:
        """Leader and in-sync replicas of each partition of `topics`, from fresh metadata;
        brokers that do not answer are not counted (a quorum-less cluster cannot say so)."""
        client = (await self.admin())._client  # noqa: SLF001
        await client.force_metadata_update()
        live = await live_broker_ids([(b.nodeId, b.host, b.port) for b in client.cluster.brokers()])
        rf, configs = await self.replication()
        floor = int(configs.get("min.insync.replicas", 1))
        return partition_health(client.cluster, [t for t in topics if t in client.cluster.topics()], floor, live=live)

    async def grow(self, topic: str, total: int) -> int:
        """Grow a topic to `total` partitions (Kafka never shrinks one); returns the count after."""
        current = await self.partition_count(topic)
        if current and current < total:
            try:
                await (await self.admin()).create_partitions({topic: NewPartitions(total_count=total)})
            except InvalidPartitionsError:  # another replica, starting at the same time, grew it first
                return await self.partition_count(topic)
            return total
        return current

    async def partition_count(self, topic: str) -> int:
        return len(await self.partitions(topic))

    async def partitions(self, topic: str) -> list[TopicPartition]:
        described = await self.ask(lambda admin: admin.describe_topics([topic]))
        for entry in described:
            if entry.get("topic") == topic and not entry.get("error_code"):
                return [TopicPartition(topic, p["partition"]) for p in sorted(entry["partitions"], key=lambda p: p["partition"])]
        return []

    async def wait_partitions(self, topic: str, timeout: float = 30.0) -> list[TopicPartition]:
        """The partitions of a topic, creating the topology if it does not exist yet."""
        deadline = time.monotonic() + timeout
        while True:
            found = await self.partitions(topic)
            if found:
                return found
            if time.monotonic() > deadline:
                raise BusUnavailable(f"topic {topic} does not exist on {self.bootstrap}")
            await self.ensure_topics([], self.settings.kafka_partitions)
            await asyncio.sleep(0.2)

    # -- groups --------------------------------------------------------------
    async def committed_offsets(self, group: str, partitions: list[TopicPartition], timeout: float = 15.0) -> dict:
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

    async def members(self, group: str, topic: str) -> list[ConsumerInfo]:
        """Who is in the group and which partitions each owns."""
        return (await self.group(group, topic))[1]

    async def group(self, group: str, topic: str) -> tuple[bool, list[ConsumerInfo]]:
        """Whether the group is stable (not rebalancing), and its members: one per client id.

        A replica killed and started again under the same name stays a member until its session
        times out: the two are one replica, with the partitions either owns.
        """
        stable = True
        by_name: dict[str, ConsumerInfo] = {}
        for response in await self.ask(lambda admin: admin.describe_consumer_groups([group])):
            for described in response.groups:  # (error, group, state, protocol_type, protocol, members, ...)
                stable = stable and described[2] in ("Stable", "Empty", "Dead", "")
                for member in described[5]:  # (member_id, [instance_id,] client_id, host, metadata, assignment)
                    client_id, assignment = member[-4], member[-1]
                    owned: list[int] = []
                    if assignment:
                        decoded = ConsumerProtocolMemberAssignment.decode(assignment)
                        owned = sorted(p for t, ps in decoded.assignment if t == topic for p in ps)
                    known = by_name.setdefault(client_id, ConsumerInfo(name=client_id))
                    known.partitions = sorted({*known.partitions, *owned})
        return stable, sorted(by_name.values(), key=lambda c: c.name)

    # -- reading -------------------------------------------------------------
    @staticmethod
    async def poll(consumer: AIOKafkaConsumer, what: str, backoff: Backoff, **fetch: Any) -> dict[TopicPartition, list[Any]]:
        """One getmany, retried with backoff until the broker answers; positions are kept meanwhile."""
        return await until_answered(lambda: consumer.getmany(**fetch), (KafkaError,), backoff, log,
                                    f"{what}: %s; retrying in %.1fs")

    @staticmethod
    async def records_until(
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
