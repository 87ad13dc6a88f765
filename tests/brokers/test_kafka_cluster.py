"""A real three-node KRaft cluster (no mocks): replication, failover, quorum loss, partition health.

The figures printed (failover and recovery times) go in the notes; they are not
asserted, because the machine is shared and slow.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

from sandbox.brokers import BrokerError
from sandbox.brokers.kafka_cluster import KafkaClusterSpec
from sandbox.brokers.testing import KafkaCluster, running_kafka_cluster
from sandbox.bus.kafka.health import partition_health, unhealthy

pytestmark = pytest.mark.timeout(600)

# What makes aiokafka's producer idempotent against the cluster (the bus uses the same).
PRODUCER_OPTIONS = {"enable_idempotence": True, "acks": "all"}
SETTLE = 180.0  # seconds a restarted node may take to rejoin on a busy 2-core machine


@pytest.fixture(scope="module")
def cluster() -> KafkaCluster:
    with running_kafka_cluster(3) as (bootstrap, handle):
        assert bootstrap == handle.bootstrap and bootstrap.count(",") == 2
        yield handle


@pytest.fixture(autouse=True)
async def healed(cluster):
    """Each test starts and leaves the cluster whole: every node up and every replica in sync."""
    yield
    for node in cluster.spec.node_ids:
        cluster.start(node)
    await cluster.wait_ready(SETTLE)
    await cluster.wait_in_sync(timeout=SETTLE)


def figure(name: str, seconds: float) -> None:
    print(f"\n[cluster figure] {name}: {seconds:.2f} s")


def new_topic() -> str:
    return f"laddr.tasks.cluster-{uuid.uuid4().hex[:8]}"


async def create_topic(cluster: KafkaCluster, topic: str, partitions: int = 3, rf: int = 3) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=rf)])
    finally:
        await admin.close()
    await cluster.wait_in_sync([topic], timeout=SETTLE)


async def client_metadata(bootstrap: str):
    """aiokafka's ClusterMetadata, fresh from the cluster."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        return await client.fetch_all_metadata()
    finally:
        await client.close()


async def producer(bootstrap: str, **options) -> AIOKafkaProducer:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, **{**PRODUCER_OPTIONS, **options})
    await p.start()
    return p


async def read_keys(bootstrap: str, topic: str, timeout: float = 120.0) -> Counter:
    """Every key in the topic, counted (reads each partition to its end, no consumer group)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    keys: Counter = Counter()
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not tps:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - topic just made
            tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            assert time.monotonic() < deadline, f"read {sum(keys.values())} of {sum(end.values())} in {timeout}s"
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                keys.update(r.key.decode() for r in records)
    finally:
        await consumer.stop()
    return keys


def check_exactly_once(acked: set[str], keys: Counter) -> tuple[int, int]:
    """(lost, duplicated): acknowledged keys missing, and keys that appear more than once."""
    lost = len([k for k in acked if keys[k] == 0])
    duplicated = len([k for k, n in keys.items() if n > 1])
    return lost, duplicated


async def wait_for(check, timeout: float, what: str, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := await check():
            return value
        await asyncio.sleep(every)
    raise AssertionError(f"gave up after {timeout:.0f}s waiting for {what}")


# --- the cluster as configured --------------------------------------------------------------


def test_spec_lists_every_node(tmp_path):
    spec = KafkaClusterSpec(tmp_path, nodes=3, ports=[19092, 19094, 19096], controller_ports=[19093, 19095, 19097])
    props = [spec.node(n).server_properties().splitlines() for n in spec.node_ids]
    for n, lines in zip(spec.node_ids, props, strict=True):
        assert f"node.id={n}" in lines
        assert "controller.quorum.voters=1@127.0.0.1:19093,2@127.0.0.1:19095,3@127.0.0.1:19097" in lines
        for line in ["default.replication.factor=3", "min.insync.replicas=2", "offsets.topic.replication.factor=3",
                     "transaction.state.log.replication.factor=3", "transaction.state.log.min.isr=2"]:
            assert line in lines
    assert props[1][props[1].index("node.id=2") + 2] == "listeners=PLAINTEXT://127.0.0.1:19094,CONTROLLER://127.0.0.1:19095"
    assert spec.bootstrap == "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"
    shared = spec.shared_properties()
    assert (shared["default.replication.factor"], shared["min.insync.replicas"]) == (3, 2)
    assert len({spec.node(n).log_dir for n in spec.node_ids}) == 3
    assert spec.node(1).cluster_id == spec.node(3).cluster_id == spec.cluster_id


def test_every_node_is_formatted_with_one_cluster_id(tmp_path):
    spec = KafkaClusterSpec(tmp_path, nodes=3, check_ports=False)
    runs = spec.prepare()
    assert len(runs) == 3
    for n, (argv, _env) in zip(spec.node_ids, runs, strict=True):
        meta = (tmp_path / f"node-{n}" / "logs" / "meta.properties").read_text()
        assert f"cluster.id={spec.cluster_id}" in meta and f"node.id={n}" in meta
        assert "-Xmx384m" in argv and argv[-1] == str(tmp_path / f"node-{n}" / "server.properties")


def test_a_node_that_dies_fails_the_start_with_its_output(tmp_path):
    data = tmp_path / "cluster"
    KafkaClusterSpec(data, nodes=3, check_ports=False).prepare()
    meta = data / "node-2" / "logs" / "meta.properties"
    meta.write_text(meta.read_text().replace("node.id=2", "node.id=7"))  # storage of another node
    start = time.monotonic()
    with pytest.raises(BrokerError, match="a Kafka node exited") as err, running_kafka_cluster(3, data_dir=data):
        pass
    assert time.monotonic() - start < 120
    assert "last lines of Kafka node 2" in str(err.value) and "node 1 ---" not in str(err.value)


async def test_three_nodes_replicate_every_topic(cluster):
    meta = await cluster.metadata()
    assert sorted(b[0] for b in meta["brokers"]) == [1, 2, 3]
    quorum = await cluster.quorum()
    assert sorted(quorum["voters"]) == [1, 2, 3] and quorum["leader_id"] in (1, 2, 3)

    made = new_topic()
    await create_topic(cluster, made, partitions=3, rf=3)
    auto = new_topic()  # auto-created by a producer, as the sandbox's topics are: the broker's default RF
    p = await producer(cluster.bootstrap)
    try:
        await p.send_and_wait(auto, b"x", key=b"k")
    finally:
        await p.stop()
    await cluster.wait_in_sync([auto], timeout=SETTLE)
    for topic, count in ((made, 3), (auto, 6)):
        parts = await cluster.partitions(topic)
        assert len(parts) == count
        for info in parts.values():
            assert sorted(info["replicas"]) == [1, 2, 3] and sorted(info["isr"]) == [1, 2, 3]

    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    await admin.start()
    try:
        [answer] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, auto)])
    finally:
        await admin.close()
    entries = {e[0]: e[1] for e in answer.resources[0][4]}
    assert entries["min.insync.replicas"] == "2"

    health = partition_health(await client_metadata(cluster.bootstrap), [made, auto], min_insync=2)
    assert len(health) == 9 and not unhealthy(health)
    print("\n" + "\n".join(h.describe() for h in health[:3]))


# --- failures ---------------------------------------------------------------------------------


async def test_leader_killed_mid_write_loses_and_duplicates_nothing(cluster):
    topic = new_topic()
    await create_topic(cluster, topic, partitions=3)
    victim = (await cluster.leaders(topic))[0]
    victim_parts = {p for p, leader in (await cluster.leaders(topic)).items() if leader == victim}
    p = await producer(cluster.bootstrap)
    acked: dict[str, tuple[int, float]] = {}  # key -> (partition, when acknowledged)
    failed: list[BaseException] = []
    killed_at = None

    async def send(key: str) -> None:
        try:
            md = await p.send_and_wait(topic, f'{{"task_id": "{key}"}}'.encode(), key=key.encode())
            acked[key] = (md.partition, time.monotonic())
        except KafkaError as e:
            failed.append(e)

    try:
        for chunk in range(40):  # 2000 keyed messages, 50 in flight at a time
            if chunk == 10:
                cluster.kill(victim)
                killed_at = time.monotonic()
            await asyncio.wait_for(asyncio.gather(*(send(f"k{chunk * 50 + i:05d}") for i in range(50))), 180)
    finally:
        await p.stop()

    after = [t for part, t in acked.values() if part in victim_parts and t > killed_at]
    failover = min(after) - killed_at
    new_leader = (await cluster.leaders(topic))[0]
    keys = await read_keys(cluster.bootstrap, topic)
    lost, duplicated = check_exactly_once(set(acked), keys)
    figure(f"leader {victim} killed (-9): next acknowledged write to its partitions after", failover)
    print(f"[cluster figure] sent 2000, acknowledged {len(acked)}, failed {len(failed)}, read {sum(keys.values())},"
          f" lost {lost}, duplicated {duplicated}; partition 0 leader {victim} -> {new_leader}")
    assert not failed, failed[:3]
    assert len(acked) == 2000
    assert (lost, duplicated) == (0, 0)
    assert sum(keys.values()) == 2000
    assert new_leader not in (victim, -1)


async def test_controller_killed_quorum_elects_another_and_writes_continue(cluster):
    topic = new_topic()
    await create_topic(cluster, topic, partitions=3)
    controller = await cluster.controller()
    p = await producer(cluster.bootstrap)
    acked: set[str] = set()
    try:
        for i in range(100):
            await p.send(topic, b"before", key=f"b{i}".encode())
        await p.flush()
        acked.update(f"b{i}" for i in range(100))
        cluster.kill(controller)
        killed_at = time.monotonic()

        async def new_controller():
            try:
                leader = await cluster.controller()
            except Exception:  # noqa: BLE001 - the node asked may be electing
                return None
            return leader if leader not in (-1, controller) else None

        elected = await wait_for(new_controller, 120, "a new active controller")
        elected_after = time.monotonic() - killed_at
        for i in range(300):
            await asyncio.wait_for(p.send_and_wait(topic, b"after", key=f"a{i}".encode()), 120)
            acked.add(f"a{i}")
            if i == 0:
                first_write = time.monotonic() - killed_at
    finally:
        await p.stop()
    keys = await read_keys(cluster.bootstrap, topic)
    lost, duplicated = check_exactly_once(acked, keys)
    figure(f"controller {controller} killed (-9): node {elected} active controller after", elected_after)
    figure("controller killed: first acknowledged write after", first_write)
    print(f"[cluster figure] acknowledged {len(acked)}, lost {lost}, duplicated {duplicated}")
    assert (lost, duplicated) == (0, 0) and len(acked) == 400


async def test_two_of_three_down_stops_writes_clearly_and_they_resume(cluster):
    topic = new_topic()
    await create_topic(cluster, topic, partitions=3)
    p = await producer(cluster.bootstrap)
    acked: set[str] = set()
    try:
        for i in range(200):
            await asyncio.wait_for(p.send_and_wait(topic, b"3 up", key=f"a{i}".encode()), 120)
            acked.add(f"a{i}")

        first = (await cluster.leaders(topic))[0]
        cluster.kill(first)
        killed_at = time.monotonic()
        for i in range(200):
            await asyncio.wait_for(p.send_and_wait(topic, b"2 up", key=f"b{i}".encode()), 120)
            acked.add(f"b{i}")
            if i == 0:
                one_down = time.monotonic() - killed_at
        second = next(n for n in cluster.alive_nodes() if n != first)
        survivor = next(n for n in cluster.alive_nodes() if n != second)
        cluster.kill(second)
        outage_at = time.monotonic()

        # One of three: no quorum, and min.insync.replicas=2 cannot be met; acks=all must not succeed.
        pending = {f"c{i}": await p.send(topic, b"1 up", key=f"c{i}".encode()) for i in range(20)}
        done, _ = await asyncio.wait(pending.values(), timeout=20)
        assert not done, "a write was acknowledged with 1 of 3 brokers alive"
        # What a producer that gives up says, for a partition the survivor leads and one a dead node led.
        leaders = await cluster.leaders(topic)
        plain = await producer(cluster.address(survivor), enable_idempotence=False, request_timeout_ms=8000)
        refusals = []
        try:
            for part in sorted({min(leaders, key=lambda q: leaders[q] != leader) for leader in (survivor, second)}):
                with pytest.raises((KafkaError, TimeoutError)) as refused:
                    await asyncio.wait_for(plain.send_and_wait(topic, b"refused", key=b"refused", partition=part), 60)
                refusals.append(f"partition {part} (leader {leaders[part]}): {type(refused.value).__name__}")
        finally:
            await plain.stop()
        print("\n[cluster figure] 1 of 3 alive: idempotent sends still pending after 20 s (they retry);"
              f" acks=all without idempotence, request_timeout_ms=8000, fails: {'; '.join(refusals)}")

        # The metadata is frozen without a quorum; partition_health told who answers says the truth.
        try:
            quorum = f"quorum leader {(await cluster.quorum())['leader_id']}"
        except BrokerError as e:  # the broker forwards DescribeQuorum to a controller that is not there
            quorum = f"DescribeQuorum unanswered ({e})"
        survivor_meta = await asyncio.wait_for(client_metadata(cluster.address(survivor)), 60)
        frozen = partition_health(survivor_meta, [topic], min_insync=2)
        truth = partition_health(survivor_meta, [topic], 2, live={survivor})
        print(f"[cluster figure] 1 of 3 alive: {quorum}; metadata says {'; '.join(h.describe() for h in frozen)}")
        print("[cluster figure] with live={%d}: %s" % (survivor, "; ".join(h.describe() for h in truth)))
        assert all(h.below_min_isr and h.isr == (survivor,) for h in truth)
        assert {h.partition for h in truth if h.offline} == {q for q, n in leaders.items() if n != survivor}

        cluster.start(second)
        restarted_at = time.monotonic()
        for key, fut in pending.items():  # the idempotent producer delivers what waited, once
            await asyncio.wait_for(fut, SETTLE)
            acked.add(key)
        resumed = time.monotonic() - restarted_at
        for i in range(100):
            await asyncio.wait_for(p.send_and_wait(topic, b"2 up again", key=f"d{i}".encode()), 120)
            acked.add(f"d{i}")
    finally:
        for node in cluster.spec.node_ids:  # stop() flushes what waits: never with 1 of 3
            cluster.start(node)
        await asyncio.wait_for(p.stop(), SETTLE)
    cluster.start(first)
    await cluster.wait_ready(SETTLE)
    keys = await read_keys(cluster.bootstrap, topic)
    lost, duplicated = check_exactly_once(acked, keys)
    figure(f"node {first} killed: first acknowledged write after", one_down)
    figure(f"node {second} killed too: writes stopped for (until its restart)", restarted_at - outage_at)
    figure(f"node {second} restarted: waiting writes acknowledged after", resumed)
    print(f"[cluster figure] acknowledged {len(acked)}, read {sum(keys.values())}, lost {lost},"
          f" duplicated {duplicated} (the refused plain write may or may not have landed: {keys['refused']})")
    assert (lost, duplicated) == (0, 0) and len(acked) == 520


async def test_partition_health_flags_a_down_broker_until_it_rejoins(cluster):
    topic = new_topic()
    await create_topic(cluster, topic, partitions=3)
    assert not unhealthy(partition_health(await client_metadata(cluster.bootstrap), [topic], min_insync=2))
    controller = await cluster.controller()
    victim = next(n for n in cluster.spec.node_ids if n != controller)
    cluster.kill(victim)
    killed_at = time.monotonic()

    async def flagged():
        bad = unhealthy(partition_health(await client_metadata(cluster.bootstrap), [topic], min_insync=2))
        return bad if len(bad) == 3 else None

    bad = await wait_for(flagged, 120, "all three partitions under-replicated", every=0.5)
    figure(f"node {victim} killed: partition_health flags its partitions after", time.monotonic() - killed_at)
    print("\n".join(h.describe() for h in bad))
    for h in bad:
        assert h.under_replicated and h.out_of_sync == (victim,) and not h.offline and not h.below_min_isr
        assert h.leader != victim and len(h.isr) == 2

    cluster.start(victim)
    started_at = time.monotonic()

    async def healthy():
        return not unhealthy(partition_health(await client_metadata(cluster.bootstrap), [topic], min_insync=2))

    await wait_for(healthy, SETTLE, "the restarted node back in every ISR", every=0.5)
    figure(f"node {victim} restarted: no under-replicated partition after", time.monotonic() - started_at)
