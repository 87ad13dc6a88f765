"""`up --kafka-brokers 3` on the local runtime: three KRaft nodes as the replicas of one service
`kafka`, every topic on three replicas, a node killed from the CLI and back, and all of it down.

Steps run in order on one stack (three JVMs take a minute to start on a shared machine).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_cli_local import cli, ok

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("cluster")
    (folder / ".env").write_text("QUEUE_BACKEND=kafka\nKAFKA_PARTITIONS=3\n")
    try:
        yield folder
    finally:
        cli(folder, "down", timeout=240)


def status(project: Path) -> dict:
    return json.loads(ok(cli(project, "status", "--json", timeout=120)))


def kafka_row(doc: dict) -> dict:
    return next(s for s in doc["services"] if s["name"] == "kafka")


def test_up_with_three_brokers_runs_three_nodes_as_one_service(project: Path) -> None:
    out = ok(cli(project, "up", "--kafka-brokers", "3", timeout=500))
    assert out.count("127.0.0.1:") >= 3, out  # bootstrap names every node
    assert "KAFKA_BROKERS=3" in (project / ".env").read_text()  # later commands see the same cluster
    doc = status(project)
    row = kafka_row(doc)
    assert row["replicas"] == "3/3" and [p["name"] for p in row["processes"]] == ["kafka-1", "kafka-2", "kafka-3"]
    parts = [p for p in doc["partitions"] if p["topic"].startswith("laddr.tasks.")]
    assert parts and all(len(p["replicas"]) == 3 and len(p["isr"]) == 3 for p in parts), parts


def test_a_killed_node_is_restarted_and_the_stack_keeps_answering(project: Path) -> None:
    before = {p["name"]: p["pid"] for p in kafka_row(status(project))["processes"]}
    ok(cli(project, "kill", "kafka", "--replica", "2"))
    answered = cli(project, "send", "researcher", '{"q": "during a node loss"}', "--timeout", "60", timeout=120)
    assert answered.returncode == 0, answered.stderr
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        row = kafka_row(status(project))
        pids = {p["name"]: p["pid"] for p in row["processes"]}
        if row["replicas"] == "3/3" and pids["kafka-2"] and pids["kafka-2"] != before["kafka-2"]:
            break
        time.sleep(2)
    assert row["replicas"] == "3/3" and pids["kafka-2"] != before["kafka-2"], row
    assert pids["kafka-1"] == before["kafka-1"] and pids["kafka-3"] == before["kafka-3"]


def test_a_node_that_does_not_exist_is_bad_input(project: Path) -> None:
    result = cli(project, "kill", "kafka", "--replica", "5")
    assert result.returncode == 2 and "kafka has replica(s) 1, 2, 3, not 5" in result.stderr, result.stderr


def test_down_leaves_no_node_behind(project: Path) -> None:
    ok(cli(project, "down", timeout=240))
    result = cli(project, "status")
    assert result.returncode == 1
