"""KafkaBus: the Bus interface on a topic per agent, one responses topic, a compacted registry.

Beyond Laddr 0.9.6: a request never joins a consumer group (one long-lived
listener per client follows `laddr.responses` from its end, futures keyed by
task_id), offsets are committed only after the response is published
(consumer.py), and the agent registry lives in a compacted topic so it
survives restarts.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable

from sandbox.bus.base import Bus, BusError, BusUnavailable, Handler
from sandbox.bus.kafka.client import KafkaClient, KafkaError, log, unavailable
from sandbox.bus.kafka.consumer import TopicConsumer
from sandbox.bus.kafka.health import PartitionHealth
from sandbox.bus.kafka.inspect import KafkaInspector
from sandbox.bus.reconnect import Backoff
from sandbox.config import Settings
from sandbox.protocol import (
    KAFKA_REGISTRY,
    KAFKA_RESPONSES,
    KAFKA_TASKS_PREFIX,
    AgentInfo,
    DecodeError,
    Response,
    decode_response,
    kafka_topic,
)

RESPONSES_CACHED = 10_000  # recent responses kept by a client, for get_response()


class KafkaBus(Bus):
    backend = "kafka"
    adds_job_id = True  # Laddr 0.9.6's Kafka answers carry only the job id its Agent echoes

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.bootstrap = settings.kafka_bootstrap
        self.client = KafkaClient(settings)
        self.inspector = KafkaInspector(self.client)  # stats, tap, dead letters, drain
        # recent answers by task id; other clients' ones as their bytes, decoded only if asked for
        self._recent: OrderedDict[str, Response | bytes] = OrderedDict()
        self._listen_error: BaseException | None = None
        self._registry: dict[str, AgentInfo] = {}
        self._registry_task: asyncio.Task[None] | None = None
        self._registry_ready = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------
    async def connect(self) -> None:
        await self.client.connect()

    async def close(self) -> None:
        await self._stop_listener()
        if self._registry_task is not None:
            self._registry_task.cancel()
            await asyncio.gather(self._registry_task, return_exceptions=True)
            self._registry_task = None
        await self.client.close()

    async def ping(self) -> bool:
        if await self.client.watch.unavailable():
            return False
        try:
            await asyncio.wait_for((await self.client.admin()).list_topics(), 10.0)
            return True
        except (KafkaError, OSError, BusError, asyncio.TimeoutError):
            return False

    async def ensure_topology(self, agents: Iterable[str], partitions: int | None = None) -> None:
        await self.client.ensure_topics([kafka_topic(a) for a in agents], partitions or self.settings.kafka_partitions)

    @unavailable
    async def add_partitions(self, agent: str, total: int) -> int:
        now = await self.client.grow(kafka_topic(agent), total)
        await self.client.refresh_metadata()
        return now

    @unavailable
    async def partition_health(self, agents: Iterable[str]) -> list[PartitionHealth]:
        topics = [kafka_topic(a) for a in agents] + [KAFKA_RESPONSES]
        try:  # a cluster without quorum may not answer metadata at all
            return await asyncio.wait_for(self.client.cluster_health(topics), 10.0)
        except asyncio.TimeoutError:
            raise BusUnavailable(f"Kafka at {self.bootstrap} gave no metadata within 10s") from None

    @unavailable
    async def channels(self) -> list[str]:
        topics = await self.client.list_topics()
        return sorted(t for t in topics if t.startswith(KAFKA_TASKS_PREFIX) or t == KAFKA_RESPONSES)

    # -- tasks and responses -------------------------------------------------
    @unavailable
    async def publish_raw(self, agent: str, raw: bytes, *, key: str | None = None) -> None:
        await self.client.send(kafka_topic(agent), raw, key, sticky=True)

    async def publish_response(self, response: Response) -> None:
        await self.client.publish_response(response)

    @unavailable
    async def get_response(self, task_id: str) -> Response | None:
        await self.follow_responses()
        found = self._recent.get(task_id)
        if isinstance(found, bytes):
            try:
                found = self._recent[task_id] = decode_response(found, task_id)
            except DecodeError:
                return None
        return found

    async def follow_responses(self) -> None:
        self._start_listener()
        await self._listening.wait()
        if self._listen_error is not None:
            error, self._listen_error = self._listen_error, None
            raise BusUnavailable(f"cannot follow {KAFKA_RESPONSES}: {error}")

    async def _listen(self) -> None:
        """Follow every partition of laddr.responses from its end; no group, no join."""
        consumer = self.client.consumer(fetch_max_wait_ms=100)
        try:
            await consumer.start()
            partitions = await self.client.wait_partitions(KAFKA_RESPONSES)
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
            while True:  # on errors poll keeps our positions: nothing published meanwhile is missed
                batches = await self.client.poll(consumer, "response listener", backoff, timeout_ms=1000, max_records=1000)
                for records in batches.values():
                    for record in records:
                        self._deliver(record.value, record.key)
        finally:
            await consumer.stop()

    def _deliver(self, raw: bytes, key: bytes | None = None) -> None:
        if key:  # the sandbox's workers key an answer by its task id: another client's is kept as it is
            task_id = key.decode(errors="replace")
            if not self._waiters.waiting(task_id):
                self._keep(task_id, raw)
                return
        try:
            response = decode_response(raw)
        except DecodeError:
            return
        # Laddr 0.9.6 answers carry only the job id, which the sandbox's clients make the task id
        task_id = self._waiters.task_of(response) or response.job_id
        if task_id:
            self._keep(task_id, response)
        self._waiters.resolve(response)

    def _keep(self, task_id: str, response: Response | bytes) -> None:
        self._recent[task_id] = response
        if len(self._recent) > RESPONSES_CACHED:
            self._recent.popitem(last=False)

    # -- consuming ---------------------------------------------------------
    def consumer_for(self, agent: str, name: str, handler: Handler, concurrency: int) -> TopicConsumer:
        return TopicConsumer(self.client, agent, name, handler, concurrency)

    # -- registry ------------------------------------------------------------
    @unavailable
    async def register_agent(self, info: AgentInfo) -> None:
        await self.client.send(KAFKA_REGISTRY, info.to_json(), info.name)

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
        consumer = self.client.consumer()
        try:
            await consumer.start()
            partitions = await self.client.wait_partitions(KAFKA_REGISTRY)
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            backoff = Backoff()
            while True:  # on errors the registry we have stays; poll follows again once Kafka is back
                batches = await self.client.poll(consumer, "registry follower", backoff, timeout_ms=200, max_records=1000)
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
