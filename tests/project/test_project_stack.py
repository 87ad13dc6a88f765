"""A project made by the real `laddr init` (laddr==0.9.6), its own Laddr workers run by the
sandbox's local runtime on real brokers, driven through the CLI as its user would.

In order, on one stack: up --project on Redis, send, status (Laddr workers, NoOp LLM),
logs, scale, kill, restart, tasks pending -> switch kafka --migrate -> answered on Kafka
(matched by job id, the blocker said), back to Redis, down. Then Laddr workers started by
hand beside the sandbox are listed and answer, and `check` measures both brokers.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.bus import make_bus
from sandbox.config import Settings, load_settings, with_project
from sandbox.project.python_env import project_python
from sandbox.project.layout import LaddrProject
from sandbox.runtime.local import LocalRuntime
from tests.cli.test_cli_local import alive, cli_env, ok

pytestmark = pytest.mark.timeout(1500)


def cli(folder: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sandbox.cli", *args], cwd=folder, env=cli_env(),
                          capture_output=True, text=True, timeout=timeout)


def status(folder: Path) -> dict:
    return json.loads(ok(cli(folder, "status", "--json")))


def service(folder: Path, name: str) -> dict:
    return next(s for s in status(folder)["services"] if s["name"] == name)


def until(check, what: str, timeout: float = 90.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while (result := check()) is None or result is False:
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(0.5)
    return result


def runtime_of(folder: Path, project: Path) -> LocalRuntime:
    return LocalRuntime(with_project(load_settings(folder / ".env", environ={}), project), cwd=folder)


@pytest.fixture(scope="module")
def stack(laddr_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(the folder the sandbox runs in, the project): up --project on Redis."""
    folder = tmp_path_factory.mktemp("sandbox-here")
    project = laddr_template  # read only: the sandbox never writes into a project it runs
    before = {p: p.read_bytes() for p in (project / ".env", project / "docker-compose.yml")}
    result = cli(folder, "up", "--runtime", "local", "--backend", "redis", "--project", str(project), timeout=1200)
    try:
        ok(result)
        # its .env names the project's own Compose broker: the sandbox's wins, and says so
        assert "is the Laddr project's own .env: its REDIS_URL" in result.stderr, result.stderr
        yield folder, project
    finally:
        cli(folder, "down", timeout=180)
    assert {p: p.read_bytes() for p in before} == before


def test_up_runs_each_agent_as_its_own_laddr_worker_on_the_noop_llm(stack: tuple[Path, Path]) -> None:
    folder, project = stack
    agents = LaddrProject.open(project).agent_names
    state = status(folder)
    workers = {s["name"]: s for s in state["services"] if s["kind"] == "worker"}
    assert sorted(workers) == sorted(f"{a}_worker" for a in agents)
    for s in workers.values():
        assert s["state"] == "running" and "Laddr worker" in s["note"] and "NoOp LLM" in s["note"], s
    served = {a["name"]: a for a in state["agents"]}
    assert all(served[a]["kind"] == "laddr" and served[a]["alive"] for a in agents), served
    # the processes are Laddr's own worker modules in the project's Python
    python = str(project_python(LaddrProject.open(project)))
    for pid in (p["pid"] for s in workers.values() for p in s["processes"]):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[0].decode() == python and cmdline[2].decode().startswith("agents."), cmdline


def test_send_gets_the_laddr_workers_answer_matched_by_its_redis_key(stack: tuple[Path, Path]) -> None:
    folder, _ = stack
    result = cli(folder, "send", "researcher", '{"query": "test"}', "--timeout", "60", "--json")
    assert result.returncode in (0, 1), result.stderr  # NoOp gives up ("incomplete"): still an answer
    answer = json.loads(result.stdout)
    assert answer["task_id"] and answer["status"] in ("success", "incomplete", "error"), answer
    assert "matched by its Redis key" in result.stderr


async def _tapped_answer(settings: Settings, agent: str) -> tuple[str, list]:
    async with make_bus(settings) as bus, make_bus(settings) as watcher:
        seen: list = []

        async def follow() -> None:
            async for message in watcher.tap():
                seen.append(message)

        tap = asyncio.create_task(follow())
        await asyncio.sleep(1.0)  # the tap starts at the end
        try:
            response = await bus.request(agent, {"query": "watched"}, timeout=60)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not any(
                    m.kind == "response" and m.task_id == response.task_id for m in seen):
                await asyncio.sleep(0.2)
        finally:
            tap.cancel()
        return response.task_id, seen


def test_messages_show_the_laddr_workers_task_and_its_answer(stack: tuple[Path, Path]) -> None:
    """Laddr answers on Redis by SETEX + PUBLISH only: the tap follows those channels too."""
    folder, project = stack
    task_id, seen = asyncio.run(_tapped_answer(runtime_of(folder, project).bus_settings("redis"), "researcher"))
    kinds = {m.kind for m in seen if m.task_id == task_id}
    assert kinds == {"task", "response"}, [(m.kind, m.channel, m.task_id) for m in seen]


def test_verify_passes_with_laddr_workers(stack: tuple[Path, Path]) -> None:
    folder, project = stack
    out = ok(cli(folder, "verify", "--timeout", "90"))
    agents = LaddrProject.open(project).agent_names
    assert out.count("✓ worker") == len(agents) and "served by laddr" in out, out
    assert out.count("✓ round trip") == len(agents) and "matched by its Redis key" in out, out


def test_logs_scale_kill_restart_work_on_laddr_workers(stack: tuple[Path, Path]) -> None:
    folder, _ = stack
    assert "Starting researcher worker" in ok(cli(folder, "logs", "researcher_worker", "--tail", "50"))
    ok(cli(folder, "scale", "researcher_worker=2"))
    until(lambda: service(folder, "researcher_worker")["replicas"] == "2/2", "two researcher replicas")
    before = {p["name"]: p["pid"] for p in service(folder, "researcher_worker")["processes"]}
    ok(cli(folder, "kill", "researcher_worker", "--replica", "2"))
    until(lambda: (p := {x["name"]: x for x in service(folder, "researcher_worker")["processes"]})
          and p["researcher_worker-2"]["state"] == "running"
          and p["researcher_worker-2"]["pid"] != before["researcher_worker-2"], "replica 2 back with a new pid")
    assert not alive(before["researcher_worker-2"])
    ok(cli(folder, "restart", "coordinator_worker"))
    until(lambda: service(folder, "coordinator_worker")["state"] == "running", "coordinator running again")
    ok(cli(folder, "scale", "researcher_worker=1"))


async def _publish(settings: Settings, agent: str, n: int) -> list[str]:
    async with make_bus(settings) as bus:
        return [(await bus.publish_task(agent, {"query": f"pending {i}"})).task_id for i in range(n)]


async def _answers_after(settings: Settings, task_ids: list[str], start_worker, timeout: float) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Listen for the answers first (Kafka's listener starts at the end), then start the worker."""
    async with make_bus(settings) as bus:
        waiters = {t: await bus.expect(t) for t in task_ids}
        await asyncio.to_thread(start_worker)
        await asyncio.wait(waiters.values(), timeout=timeout)
        return {t: w.result().matched_by or "" for t, w in waiters.items() if w.done() and not w.exception()}


def test_switch_with_pending_tasks_moves_them_and_kafka_answers_them_by_job_id(stack: tuple[Path, Path]) -> None:
    folder, project = stack
    ok(cli(folder, "scale", "writer_worker=0"))
    runtime = runtime_of(folder, project)
    pending = asyncio.run(_publish(runtime.bus_settings("redis"), "writer", 6))
    refused = cli(folder, "switch", "kafka")
    assert refused.returncode == 1 and "6 task(s) still pending on redis (writer: 6)" in refused.stderr, refused.stderr
    moved = ok(cli(folder, "switch", "kafka", "--migrate", timeout=600))
    assert "moved 6" in moved, moved
    answers = asyncio.run(_answers_after(runtime.bus_settings("kafka"), pending,
                                         lambda: ok(cli(folder, "scale", "writer_worker=1")), 120))
    assert set(answers) == set(pending) and set(answers.values()) == {"job_id"}, answers
    result = cli(folder, "send", "researcher", '{"query": "on kafka"}', "--timeout", "90")
    assert result.returncode in (0, 1) and "matched by its job_id only" in result.stderr, result.stderr
    assert "migration blocker" in result.stderr
    verified = ok(cli(folder, "verify", "--timeout", "90"))  # Laddr's Kafka workers are in no registry
    assert "✓ topic laddr.responses" in verified and "✓ worker researcher: served by laddr" in verified, verified
    assert "matched by its job_id only" in verified
    back = ok(cli(folder, "switch", "redis", "--migrate", timeout=600))
    assert "switched kafka -> redis" in back


def test_laddr_workers_started_by_hand_are_listed_and_answer(stack: tuple[Path, Path], tmp_path: Path) -> None:
    """`python -m agents.summarizer` as its user starts it (no sandbox code), against the sandbox's Redis."""
    folder, project = stack
    settings = runtime_of(folder, project).bus_settings("redis")
    mine = tmp_path / "mine"
    shutil.copytree(project, mine, symlinks=True)
    (mine / "agents" / "summarizer.py").write_text(
        (project / "agents" / "researcher.py").read_text().replace('name="researcher"', 'name="summarizer"'))
    env = {**os.environ, "QUEUE_BACKEND": "redis", "REDIS_URL": settings.redis_url, "PYTHONPATH": str(mine)}
    python = project_python(LaddrProject.open(project))
    worker = subprocess.Popen([str(python), "-m", "agents.summarizer"], cwd=mine, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def listed() -> dict | None:
            rows = {a["name"]: a for a in status(folder)["agents"]}
            return rows.get("summarizer") if rows.get("summarizer", {}).get("alive") else None
        row = until(listed, "summarizer listed alive", 90)
        assert row["kind"] == "laddr" and row["registry"]["kind"] == "laddr", row
        # no LLM key: Laddr's own answer is an error about it, matched all the same
        result = cli(folder, "send", "summarizer", '{"query": "by hand"}', "--timeout", "60", "--json")
        answer = json.loads(result.stdout)
        assert answer["task_id"] and answer["status"] in ("success", "incomplete", "error"), (answer, result.stderr)
    finally:
        worker.terminate()
        worker.wait(30)


def test_check_measures_both_brokers_and_laddrs_at_most_once_loss(laddr_template: Path, tmp_path: Path) -> None:
    result = cli(tmp_path, "check", "--project", str(laddr_template), "--rounds", "3", "--burst", "3",
                 "--loss-tasks", "12", "--json", "--markdown", str(tmp_path / "ready.md"), timeout=1200)
    report = json.loads(ok(result))
    assert report["backends"] == ["redis", "kafka"] and not report["problems"], report["problems"]
    matched = {(f["agent"], f["backend"]): f for f in report["figures"]}
    for backend in ("redis", "kafka"):
        f = matched[("researcher", backend)]
        assert f["matched"] == f["sent"] == 6 and f["p50_ms"] > 0, f
    assert matched[("researcher", "kafka")]["matched_by_job_id"] == 6
    losses = {(x["worker"], x["backend"]): x for x in report["losses"]}
    for backend in ("redis", "kafka"):
        assert losses[("sandbox worker", backend)]["lost"] == 0, losses
        assert losses[("laddr researcher", backend)]["sent"] == 12, losses
    # measured, not assumed: Laddr acknowledges on read, so the kill costs what its worker held
    assert any(losses[("laddr researcher", b)]["lost"] > 0 for b in ("redis", "kafka")), losses
    blockers = " ".join(b["what"] for b in report["blockers"])
    assert "no key and no task_id" in blockers and "at-most-once" in blockers
    assert "| researcher |" in (tmp_path / "ready.md").read_text()


def test_an_agent_module_that_fails_to_import_crash_loops_and_the_others_run(laddr_project: Path, tmp_path: Path) -> None:
    (laddr_project / "agents" / "broken.py").write_text(
        "from laddr import Agent, WorkerRunner\nimport nosuchmodule_here\nbroken = Agent(name='broken')\n")
    folder = tmp_path / "here"
    folder.mkdir()
    result = cli(folder, "up", "--runtime", "local", "--project", str(laddr_project), timeout=900)
    try:
        assert result.returncode == 1, result.stderr
        assert "broken_worker-1 keeps exiting" in result.stderr and "nosuchmodule_here" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert service(folder, "researcher_worker")["state"] == "running"
    finally:
        cli(folder, "down", timeout=180)


def test_requirements_that_cannot_install_are_one_line_and_leave_nothing(laddr_project: Path, tmp_path: Path) -> None:
    requirements = laddr_project / "requirements.txt"
    requirements.write_text(requirements.read_text() + "\nnosuch-package-for-laddr-sandbox==9.9.9\n")
    folder = tmp_path / "here"
    folder.mkdir()
    result = cli(folder, "up", "--runtime", "local", "--project", str(laddr_project), timeout=900)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "nosuch-package-for-laddr-sandbox" in last and "could not install" in last, last
    after = cli(folder, "status")
    assert after.returncode == 1 and "no sandbox stack is running" in after.stderr
