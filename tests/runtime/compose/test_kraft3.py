"""The Compose three-node KRaft file on the real Docker engine, with the locally built Kafka image
(scripts/setup-docker.sh; nothing is pulled): three healthy nodes, the guide's topics on three
replicas, and one node killed while the other two keep every partition led and in sync.

Brokers only (the apps' containers are what test_compose_stack.py covers), in a project of its own.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from sandbox.brokers.kafka_wire import kafka_metadata
from sandbox.brokers.ports import free_ports
from sandbox.runtime.compose.config import CLUSTER_FILE, ROOT_VAR
from sandbox.runtime.compose.images import COMPOSE_DIR, TAGS

pytestmark = pytest.mark.timeout(600)
PROJECT = f"kraft3test{os.getpid()}"


def compose(env: dict[str, str], *args: str, timeout: float = 420) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "compose", "-p", PROJECT, "-f", "docker-compose.yml", "-f", CLUSTER_FILE, *args],
                          cwd=COMPOSE_DIR, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], list[int]]]:
    if not shutil.which("docker") or subprocess.run(["docker", "image", "inspect", TAGS.kafka],
                                                    capture_output=True).returncode:
        pytest.fail(f"docker or the image {TAGS.kafka} is missing: run scripts/setup-docker.sh first", pytrace=False)
    ports = free_ports(3)
    env = {"PATH": os.environ["PATH"], "KAFKA_IMAGE": TAGS.kafka, ROOT_VAR: str(tmp_path_factory.mktemp("kraft3")),
           "KAFKA_HOST_PORT": str(ports[0]), "KAFKA_2_HOST_PORT": str(ports[1]), "KAFKA_3_HOST_PORT": str(ports[2])}
    if "DOCKER_HOST" in os.environ:
        env["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
    try:
        up = compose(env, "up", "-d", "--wait", "kafka", "kafka-2", "kafka-3")
        assert up.returncode == 0, up.stderr[-2000:]
        init = compose(env, "run", "--rm", "kafka-init")
        assert init.returncode == 0, init.stderr[-2000:]
        yield env, ports
    finally:
        compose(env, "down", "-v", "--remove-orphans", "--timeout", "20", timeout=180)


def metadata(port: int) -> dict:
    return asyncio.run(kafka_metadata(f"127.0.0.1:{port}", 5.0))


def test_three_nodes_and_every_topic_on_three_replicas(cluster: tuple[dict[str, str], list[int]]) -> None:
    _, ports = cluster
    meta = metadata(ports[0])
    assert sorted(b[0] for b in meta["brokers"]) == [1, 2, 3]
    assert sorted(b[2] for b in meta["brokers"]) == sorted(ports)  # each advertises its own host port
    tasks = meta["topics"]["laddr.tasks.researcher"]
    assert all(len(p["replicas"]) == 3 and len(p["isr"]) == 3 for p in tasks.values()), tasks


def test_a_killed_node_leaves_every_partition_led_by_the_others(cluster: tuple[dict[str, str], list[int]]) -> None:
    env, ports = cluster
    assert compose(env, "kill", "kafka-2").returncode == 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # fenced after broker.session.timeout.ms (3 s)
        meta = metadata(ports[0])
        tasks = meta["topics"]["laddr.tasks.researcher"]
        if all(p["leader"] in (1, 3) and 2 not in p["isr"] for p in tasks.values()):
            break
        time.sleep(1)
    assert all(p["leader"] in (1, 3) and len(p["isr"]) == 2 for p in tasks.values()), tasks
