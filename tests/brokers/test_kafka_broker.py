"""The pinned Kafka jars and a real KRaft broker started from them (no mocks)."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from sandbox.brokers import (
    BrokerError,
    KafkaSpec,
    ensure_kafka_jars,
    find_java,
    free_port,
    kafka_jars,
    kafka_metadata,
    kafka_version,
    topics_argv,
    wait_kafka_ready,
)
from sandbox.brokers.testing import running_kafka


@pytest.fixture(scope="module")
def jars() -> Path:
    return ensure_kafka_jars()


@pytest.fixture(scope="module")
def bootstrap(jars) -> str:
    with running_kafka() as b:
        yield b


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy_cache(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_pinned_release_is_kafka_3_9():
    assert kafka_version().startswith("3.9.")


def test_jars_match_the_lock(jars):
    assert ensure_kafka_jars(verify=True) == jars
    for jar in kafka_jars.locked_jars():
        assert sha256(jars / jar.name) == jar.sha256, jar.name


def test_cached_ensure_is_fast(jars):
    start = time.perf_counter()
    for _ in range(10):
        ensure_kafka_jars()
    assert (time.perf_counter() - start) / 10 < 0.05


def test_corrupted_jar_is_detected_and_fetched_again(jars, tmp_path):
    cache = copy_cache(jars, tmp_path / "cache")
    small = min(kafka_jars.locked_jars(), key=lambda j: j.size)
    victim = cache / small.name
    victim.write_bytes(b"\0" * small.size)  # same size: only a re-hash notices
    seen = []
    ensure_kafka_jars(cache, progress=lambda done, total, name: seen.append((done, total)), verify=True)
    assert sha256(victim) == small.sha256
    assert seen and seen[-1][0] == seen[-1][1]

    victim.write_bytes(b"truncated")  # a size change: the cheap cached check notices
    ensure_kafka_jars(cache)
    assert sha256(victim) == small.sha256


def test_checksum_mismatch_is_a_clear_error(jars, tmp_path, monkeypatch):
    cache = copy_cache(jars, tmp_path / "cache")
    small = min(kafka_jars.locked_jars(), key=lambda j: j.size)
    (cache / small.name).unlink()
    mirror = tmp_path / "mirror"
    (mirror / small.path).parent.mkdir(parents=True)
    (mirror / small.path).write_bytes(b"not the jar you pinned")
    monkeypatch.setenv("LADDR_MAVEN_REPO", mirror.as_uri())
    monkeypatch.setattr(kafka_jars, "ATTEMPTS", 2)
    with pytest.raises(BrokerError, match="checksum mismatch.*LADDR_MAVEN_REPO"):
        ensure_kafka_jars(cache)
    assert not (cache / small.name).exists()
    assert not list(cache.glob(".*.part"))  # no temp files left behind


def test_a_local_mirror_is_honoured(jars, tmp_path, monkeypatch):
    cache = copy_cache(jars, tmp_path / "cache")
    small = min(kafka_jars.locked_jars(), key=lambda j: j.size)
    (cache / small.name).unlink()
    mirror = tmp_path / "mirror"
    (mirror / small.path).parent.mkdir(parents=True)
    shutil.copy(jars / small.name, mirror / small.path)
    monkeypatch.setenv("LADDR_MAVEN_REPO", mirror.as_uri())
    ensure_kafka_jars(cache)
    assert sha256(cache / small.name) == small.sha256


def test_unreachable_repository_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("LADDR_MAVEN_REPO", f"http://127.0.0.1:{free_port()}/maven2")
    monkeypatch.setattr(kafka_jars, "ATTEMPTS", 2)
    with pytest.raises(BrokerError, match="cannot fetch Kafka jars.*LADDR_MAVEN_REPO") as err:
        ensure_kafka_jars(tmp_path / "empty")
    assert "\n" not in str(err.value)


def test_java_17_or_newer_is_found():
    out = subprocess.run([find_java(), "-version"], capture_output=True, text=True, check=False).stderr
    assert "version" in out


def test_taken_port_is_a_clear_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(BrokerError, match=f"port {port} on 127.0.0.1 is taken by another program"):
            KafkaSpec(tmp_path, port=port, controller_port=free_port()).prepare()
        with pytest.raises(BrokerError, match=f"port {port} on 127.0.0.1 is taken"):
            KafkaSpec(tmp_path, port=free_port(), controller_port=port).prepare()


def test_server_properties_are_single_node_kraft(tmp_path):
    props = KafkaSpec(tmp_path, port=19092, controller_port=19093).server_properties()
    for line in [
        "process.roles=broker,controller",
        "node.id=1",
        "controller.quorum.voters=1@127.0.0.1:19093",
        "listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093",
        "advertised.listeners=PLAINTEXT://127.0.0.1:19092",
        "offsets.topic.replication.factor=1",
        "group.initial.rebalance.delay.ms=0",
        "num.partitions=6",
    ]:
        assert line in props.splitlines()


async def test_wait_gives_up_on_a_silent_port():
    port = free_port()
    ticks = []
    with pytest.raises(BrokerError, match=f"127.0.0.1:{port} not ready after 2s"):
        await wait_kafka_ready(f"127.0.0.1:{port}", timeout=2, progress=ticks.append)
    assert ticks and ticks[0] >= 1.0


async def test_metadata_names_the_broker(bootstrap):
    meta = await kafka_metadata(bootstrap)
    host, port = bootstrap.rsplit(":", 1)
    assert meta["brokers"] == [(1, host, int(port))]
    assert meta["controller_id"] == 1


async def test_produce_consume_round_trip(bootstrap):
    topic = f"laddr.tasks.test-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b'{"task_id": "t1"}', key=b"t1")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id="laddr-test-workers", auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        msg = await asyncio.wait_for(consumer.getone(), 30)
        assert (msg.key, msg.value) == (b"t1", b'{"task_id": "t1"}')
        await consumer.commit()
    finally:
        await consumer.stop()
    assert (await kafka_metadata(bootstrap))["brokers"]  # still healthy after the group's first commit


def test_topic_command_creates_and_lists(bootstrap):
    topic = f"laddr.tasks.listed-{uuid.uuid4().hex[:8]}"
    create = subprocess.run(
        topics_argv(bootstrap, "--create", "--topic", topic, "--partitions", "3", "--replication-factor", "1"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert create.returncode == 0, create.stderr
    listed = subprocess.run(topics_argv(bootstrap, "--list"), capture_output=True, text=True, timeout=120, check=False)
    assert listed.returncode == 0, listed.stderr
    assert topic in listed.stdout.split()
    described = subprocess.run(
        topics_argv(bootstrap, "--describe", "--topic", topic), capture_output=True, text=True, timeout=120, check=False
    )
    assert "PartitionCount: 3" in described.stdout


def test_storage_is_formatted_once_and_kept(tmp_path):
    spec = KafkaSpec(tmp_path, port=free_port(), controller_port=free_port())
    spec.prepare()
    meta = (tmp_path / "logs" / "meta.properties").read_text()
    cluster_id = (tmp_path / "cluster-id").read_text().strip()
    assert f"cluster.id={cluster_id}" in meta
    argv, env = spec.prepare()  # second time: no re-format, same cluster
    assert (tmp_path / "logs" / "meta.properties").read_text() == meta
    assert argv[0] == find_java() and "kafka.Kafka" in argv and argv[-1].endswith("server.properties")
    assert "CLASSPATH" not in env


async def test_restart_keeps_messages(tmp_path):
    data = tmp_path / "kafka"
    with running_kafka(data_dir=data) as first:
        producer = AIOKafkaProducer(bootstrap_servers=first, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait("laddr.responses", b"kept", key=b"t1")
        finally:
            await producer.stop()
    with running_kafka(data_dir=data) as second:  # new ports, same data
        consumer = AIOKafkaConsumer("laddr.responses", bootstrap_servers=second, auto_offset_reset="earliest")
        await consumer.start()
        try:
            msg = await asyncio.wait_for(consumer.getone(), 30)
        finally:
            await consumer.stop()
    assert msg.value == b"kept"


def test_a_broker_that_dies_fails_fast_with_its_output(tmp_path):
    # Storage formatted for another node id: the broker refuses to start.
    data = tmp_path / "kafka"
    spec = KafkaSpec(data, port=free_port(), controller_port=free_port())
    spec.prepare()
    meta = data / "logs" / "meta.properties"
    meta.write_text(meta.read_text().replace("node.id=1", "node.id=2"))
    start = time.monotonic()
    with pytest.raises(BrokerError, match="exited while starting") as err, running_kafka(data_dir=data):
        pass
    assert time.monotonic() - start < 60
    assert "last lines of Kafka" in str(err.value)
