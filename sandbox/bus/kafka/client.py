"""The Kafka connection both sides share, and the one module that imports aiokafka.

The producer, consumers, the admin client and the questions asked with it
(partitions, committed offsets, group members), plus aiokafka's names the
rest of the backend needs, re-exported from here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
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

from sandbox.bus.base import BusError, BusUnavailable, ConsumerInfo, MessageTooLarge, translate_errors
from sandbox.bus.delivery import check_size
from sandbox.bus.reconnect import Backoff, BrokerWatch, RepeatFilter, tcp_probe, until_answered
from sandbox.config import Settings
from sandbox.protocol import KAFKA_DLQ, KAFKA_REGISTRY, KAFKA_RESPONSES, Response

__all__ = [
    # aiokafka's names the rest of the backend uses, so that it need not import aiokafka itself
    "AIOKafkaConsumer", "ConsumerRebalanceListener", "KafkaError", "TopicPartition",
    "KafkaClient", "METADATA_MAX_AGE_MS", "addresses", "header", "headers", "log", "unavailable",
]

log = logging.getLogger("sandbox.bus.kafka")

METADATA_MAX_AGE_MS = 5_000  # see partitions added later within seconds (aiokafka's default: 5 minutes)

_QUIET = RepeatFilter()
COORDINATOR_LOOKUP = "Group Coordinator Request failed: %s"  # aiokafka's ERROR while it looks again


class CoordinatorRetry(logging.Filter):
    """aiokafka logs a retriable coordinator lookup (Error 15 while a broker starts) as an ERROR,
    then retries: it is a retry at start, said once at INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == COORDINATOR_LOOKUP and record.args and getattr(record.args[0], "retriable", False):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = "group coordinator not available yet (%s); retrying, as at every start"
        return True


_RETRY = CoordinatorRetry()


def _quiet_aiokafka() -> None:
    """One line per kind of aiokafka connection error while the broker is away, not ten a second;
    a coordinator lookup retried at start is no error."""
    for name in [n for n in logging.root.manager.loggerDict if n == "aiokafka" or n.startswith("aiokafka.")]:
        logger = logging.getLogger(name)
        if _RETRY not in logger.filters:
            logger.filters.insert(0, _RETRY)
        if _QUIET not in logger.filters:
            logger.addFilter(_QUIET)


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
        _quiet_aiokafka()

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
        if self._producer is None:
            raise BusUnavailable("the Kafka bus is not connected (call connect() first)")
        return self._producer

    async def connect(self) -> None:
        if self._producer is not None:
            return
        # acks=all: an acknowledged message survives the loss of the leader.
        producer = AIOKafkaProducer(acks="all", linger_ms=0, max_request_size=1_048_576,
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
            await self._producer.stop()
            self._producer = None

    async def list_topics(self) -> list[str]:
        return list(await (await self.admin()).list_topics())

    # -- producing ---------------------------------------------------------
    async def send(self, topic: str, raw: bytes, key: str | None, hdrs: list[tuple[str, bytes]] | None = None) -> None:
        check_size(raw)
        down = await self.watch.unavailable()
        if down:  # fail at once (the API: 503) instead of waiting out the producer's timeout
            raise BusUnavailable(down)
        try:
            await self.producer.send_and_wait(topic, raw, key=key.encode() if key else None, headers=hdrs)
        except MessageSizeTooLargeError as exc:
            raise MessageTooLarge(f"Kafka refused a {len(raw):,}-byte message: {exc}") from None
        except (KafkaConnectionError, KafkaTimeoutError) as exc:
            raise BusUnavailable(f"lost Kafka at {self.bootstrap}: {exc or type(exc).__name__}") from None

    @unavailable
    async def publish_response(self, response: Response) -> None:
        await self.send(KAFKA_RESPONSES, response.encode(), response.task_id)

    async def dead_letter(self, source: str, raw: bytes, reason: str, delivery_count: int, key: str | None) -> None:
        await self.send(KAFKA_DLQ, raw, key, headers(reason=reason, source=source, delivery_count=delivery_count))

    async def refresh_metadata(self) -> None:
        """This client sends to partitions added a moment ago at once."""
        if self._producer is not None:
            await self._producer.client.force_metadata_update()

    # -- topics --------------------------------------------------------------
    @unavailable
    async def ensure_topics(self, topics: list[str], partitions: int) -> None:
        """Task topics with N partitions (so replicas share work), responses, DLQ, registry."""
        admin = await self.admin()
        wanted = [NewTopic(t, partitions, 1) for t in topics]
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
                await self.grow(topic.name, partitions)

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
        described = await (await self.admin()).describe_topics([topic])
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
        for response in await (await self.admin()).describe_consumer_groups([group]):
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
