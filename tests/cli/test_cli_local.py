"""The CLI driving a real local stack (supervisord, Apache Kafka, redis-server), as a user would.

The steps run in order on one stack: up on Kafka, verify, the guide's curl,
scale, logs, watch, a switch to Redis with 50 tasks pending, back to Kafka, down.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandbox.bus import make_bus
from sandbox.config import load_settings
from sandbox.runtime.local import LocalRuntime
from tests.procs import ROOT, LineReader

pytestmark = pytest.mark.timeout(600)


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUEUE_", "REDIS_", "KAFKA_", "LADDR_"))}
    # Pinned: a Compose stack elsewhere on this machine's Docker engine must not be picked up.
    return {**env, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "NO_COLOR": "1", "LADDR_RUNTIME": "local"}


def cli(project: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox.cli", *args], cwd=project, env=cli_env(),
        capture_output=True, text=True, timeout=timeout,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


def runtime_of(project: Path) -> LocalRuntime:
    return LocalRuntime(load_settings(project / ".env", environ={}), cwd=project)


def status(project: Path) -> dict:
    return json.loads(ok(cli(project, "status", "--json")))


def pids(project: Path) -> list[int]:
    found = [p["pid"] for s in status(project)["services"] for p in s["processes"] if p["pid"]]
    supervisord = runtime_of(project).dir.pidfile
    if supervisord.exists():
        found.append(int(supervisord.read_text().strip()))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    project = tmp_path_factory.mktemp("project")
    try:
        result = cli(project, "up", "--runtime", "local", "--backend", "kafka", timeout=300)
        ok(result)
        assert "starting Kafka (JVM)" in result.stderr  # progress, not silence
        yield project
    finally:
        down = cli(project, "down", timeout=120)
        if down.returncode != 0:  # never leave a stack behind, even when down fails
            pidfile = runtime_of(project).dir.pidfile
            if pidfile.exists():
                os.killpg(int(pidfile.read_text().strip()), signal.SIGKILL)


def test_verify_passes_the_guides_checks(project: Path) -> None:
    out = ok(cli(project, "verify"))
    for topic in ("laddr.tasks.coordinator", "laddr.tasks.researcher", "laddr.tasks.analyzer",
                  "laddr.tasks.writer", "laddr.tasks.validator", "laddr.responses"):
        assert f"✓ topic {topic}" in out
    assert out.count("✓ worker") == 5 and out.count("✓ round trip") == 5
    assert "all checks passed" in out


def test_the_guides_curl_answers(project: Path) -> None:
    settings = runtime_of(project).bus_settings("kafka")
    reply = httpx.post(
        f"http://{settings.api_host}:{settings.api_port}/api/v1/run",
        json={"workflow_name": "test_workflow", "initial_task": {"agent": "researcher", "inputs": {"query": "test"}}},
        timeout=60,
    )
    assert reply.status_code == 200 and reply.json()["result"]["query"] == "test"


def test_send_prints_the_response_and_latency(project: Path) -> None:
    out = ok(cli(project, "send", "researcher", '{"query": "test"}'))
    assert out.startswith("success") and "latency" in out and "researcher_worker-1" in out
    assert json.loads(out.split("\n", 1)[1])["query"] == "test"


def test_scale_gives_three_replicas_that_each_own_partitions(project: Path) -> None:
    ok(cli(project, "scale", "researcher_worker=3"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = status(project)
        queue = next(q for q in state["queues"] if q["agent"] == "researcher")
        owners = {c["name"]: c["partitions"] for c in queue["consumers"]}
        if len(owners) == 3 and all(owners.values()):
            break
        time.sleep(1)
    service = next(s for s in state["services"] if s["name"] == "researcher_worker")
    assert service["replicas"] == "3/3"
    assert sorted(owners) == ["researcher_worker-1", "researcher_worker-2", "researcher_worker-3"]
    assert sorted(p for parts in owners.values() for p in parts) == list(range(6))
    assert re.search(r"researcher_worker\s+3/3\s+running", ok(cli(project, "status")))


def test_logs_follow_every_replica_tagged(project: Path) -> None:
    out = ok(cli(project, "logs", "researcher_worker", "--tail", "500"))
    for n in (1, 2, 3):
        assert f"researcher_worker-{n}" in out
    follower = subprocess.Popen(
        [sys.executable, "-m", "sandbox.cli", "logs", "researcher_worker", "-f", "--tail", "0"],
        cwd=project, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        time.sleep(1.0)
        reader = LineReader(follower)
        sent = json.loads(ok(cli(project, "send", "researcher", '{"query": "followed"}', "--json")))
        received = reader.wait_for(f"task {sent['task_id']} received")
        reader.wait_for(f"task {sent['task_id']} done")
        assert received.startswith(sent["worker_id"])  # tagged by the replica that did it
    finally:
        follower.terminate()
        follower.wait(10)


def test_watch_shows_tasks_and_responses_live(project: Path) -> None:
    watcher = subprocess.Popen(
        [sys.executable, "-m", "sandbox.cli", "watch", "--json", "--count", "2", "laddr.*"],
        cwd=project, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        time.sleep(5.0)  # the tap starts at the end (its process must be up and following first)
        sent = json.loads(ok(cli(project, "send", "analyzer", '{"facts": ["a"]}', "--json")))
        out, err = watcher.communicate(timeout=60)
    finally:
        watcher.kill()
    lines = [json.loads(l) for l in out.splitlines()]
    assert [(l["kind"], l["task_id"]) for l in lines] == [("task", sent["task_id"]), ("response", sent["task_id"])], err
    assert lines[0]["channel"] == "laddr.tasks.analyzer" and lines[1]["channel"] == "laddr.responses"


async def publish(project: Path, backend: str, count: int) -> list[str]:
    async with make_bus(runtime_of(project).bus_settings(backend)) as bus:
        return [(await bus.publish_task("researcher", {"query": f"pending {i}"})).task_id for i in range(count)]


async def answered(project: Path, backend: str, task_ids: list[str], timeout: float) -> set[str]:
    async with make_bus(runtime_of(project).bus_settings(backend)) as bus:
        results = await asyncio.gather(*[bus.wait_for_response(t, timeout) for t in task_ids], return_exceptions=True)
    return {t for t, r in zip(task_ids, results) if not isinstance(r, BaseException) and r.ok}


def test_switch_to_redis_with_50_pending_loses_none(project: Path) -> None:
    ok(cli(project, "scale", "researcher_worker=0"))
    task_ids = asyncio.run(publish(project, "kafka", 50))
    assert "researcher: 50" in ok(cli(project, "pending"))
    refused = cli(project, "switch", "redis")
    assert refused.returncode == 1 and "50 task(s) still pending on kafka" in refused.stderr
    assert "Traceback" not in refused.stderr
    out = ok(cli(project, "switch", "redis", "--migrate", timeout=300))
    assert "switched kafka -> redis" in out and "researcher: 50 task(s) moved" in out
    assert "QUEUE_BACKEND=redis" in (project / ".env").read_text()
    ok(cli(project, "scale", "researcher_worker=2"))
    assert asyncio.run(answered(project, "redis", task_ids, 60)) == set(task_ids)
    assert status(project)["backend"] == "redis"


def test_switch_back_to_kafka(project: Path) -> None:
    out = ok(cli(project, "switch", "kafka", timeout=300))
    assert "switched redis -> kafka" in out
    ok(cli(project, "verify"))


def test_partitions_of_an_unknown_agent_or_fewer_is_bad_input_and_creates_nothing(project: Path) -> None:
    result = cli(project, "partitions", "nosuch", "8")
    assert result.returncode == 2 and "unknown agent 'nosuch'" in result.stderr, result.stderr
    assert "laddr.tasks.nosuch" not in {q["channel"] for q in status(project)["queues"]}
    assert "nosuch" not in {a["name"] for a in status(project)["agents"]}
    fewer = cli(project, "partitions", "researcher", "2")
    assert fewer.returncode == 2 and "cannot shrink" in fewer.stderr, fewer.stderr


def test_limits_are_said_and_are_bad_input(project: Path, tmp_path: Path) -> None:
    too_many = cli(project, "scale", "researcher_worker=100000")
    assert too_many.returncode == 2 and "at most 64 replicas" in too_many.stderr, too_many.stderr
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"query": "x" * 1_000_000}))
    too_big = cli(project, "send", "researcher", f"@{big}")
    assert too_big.returncode == 2 and len(too_big.stderr.strip().splitlines()) == 1, too_big.stderr
    with subprocess.Popen([sys.executable, "-m", "sandbox.cli", "watch", "["], cwd=project, env=cli_env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as watching:
        try:
            assert "shell-style" in watching.stderr.readline()  # not a silent wait
        finally:
            watching.send_signal(signal.SIGINT)


def test_status_watch_prints_rates_per_agent(project: Path) -> None:
    out = ok(cli(project, "status", "--watch", "0.5", "--count", "2", "--json"))
    rows = [json.loads(line) for line in out.splitlines()]
    agents = {r["agent"] for r in rows}
    assert {"coordinator", "researcher", "analyzer", "writer", "validator"} <= agents
    assert all(r["in_per_s"] >= 0 and r["answered_per_s"] >= 0 and r["trend"] for r in rows), rows
    assert len([r for r in rows if r["agent"] == "researcher"]) == 2


def test_a_replica_that_does_not_exist_is_bad_input(project: Path) -> None:
    result = cli(project, "kill", "researcher_worker", "--replica", "9")
    assert result.returncode == 2 and "researcher_worker has replica(s) 1, 2, not 9" in result.stderr, result.stderr
    single = cli(project, "kill", "kafka", "--replica", "2")
    assert single.returncode == 2 and "kafka has replica(s) 1, not 2" in single.stderr, single.stderr


def test_unknown_service_is_bad_input(project: Path) -> None:
    result = cli(project, "logs", "nosuch_worker")
    assert result.returncode == 2 and "unknown service 'nosuch_worker'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_down_leaves_no_process_behind(project: Path) -> None:
    ok(cli(project, "scale", "researcher_worker=0"))
    asyncio.run(publish(project, "kafka", 3))
    running = pids(project)
    assert len(running) >= 7 and all(alive(p) for p in running)
    down = cli(project, "down", timeout=120)
    assert "3 task(s) wait unanswered (researcher: 3)" in ok(down) + down.stderr, down.stderr
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(alive(p) for p in running):
        time.sleep(0.2)
    assert [p for p in running if alive(p)] == []
    after = cli(project, "status")
    assert after.returncode == 1 and "no sandbox stack is running" in after.stderr
