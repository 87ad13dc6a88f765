"""`--runtime compose --project DIR`: a real `laddr init` project's own docker-compose.yml on a real engine.

The project is made by the real `laddr init` (laddr==0.9.6 from PyPI, tests/project/conftest.py),
its workers are its own `python -m agents.<name>` in the image project_image.py builds offline,
the brokers are the local images of sandbox.runtime.compose.images. Everything goes through the
`laddr-sandbox` CLI as a user types it. No engine: the tests FAIL with the reason, they never skip.
Also here: the wheel carries the compose files, so an installed sandbox runs `--runtime compose`
from an empty folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sandbox.brokers.ports import free_ports
from sandbox.runtime.compose.images import ensure_images
from sandbox.runtime.compose.project import compose_project_name
from tests.project.conftest import GUIDE_AGENTS, docker_compose, laddr_env, laddr_project, laddr_template  # noqa: F401
from tests.runtime.compose.test_compose_stack import need_engine

pytestmark = pytest.mark.timeout(900)
REPO = Path(__file__).resolve().parents[3]
CLI = [sys.executable, "-m", "sandbox.cli"]
TOPICS = {*(f"laddr.tasks.{a}" for a in GUIDE_AGENTS), "laddr.responses"}


@pytest.fixture(scope="module")
def local_images() -> dict[str, str]:
    need_engine()
    return ensure_images(log=lambda line: None)  # cached: seconds when setup-docker.sh built them


def sandbox(cwd: Path, *args: str, timeout: float = 600, env: dict[str, str] | None = None,
            cli: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("QUEUE_", "REDIS_", "KAFKA_", "LADDR_", "COMPOSE_"))}
    environ.update(env or {})
    return subprocess.run([*(cli or CLI), *args], cwd=cwd, env=environ, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout)


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-1500:]}"
    return proc.stdout


def containers(project: str, *filters: str) -> list[dict]:
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}",
                          *(a for f in filters for a in ("--filter", f))], capture_output=True, text=True).stdout.split()
    if not ids:
        return []
    return json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True).stdout)


def leftovers(project: str) -> list[str]:
    found = [c["Name"] for c in containers(project)]
    found += subprocess.run(["docker", "network", "ls", "-q", "--filter", f"label=com.docker.compose.project={project}"],
                            capture_output=True, text=True).stdout.split()
    found += subprocess.run(["docker", "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={project}"],
                            capture_output=True, text=True).stdout.split()
    return found


def answered(sent: subprocess.CompletedProcess[str]) -> dict:
    """A Laddr worker's answer to `send --json`: on the NoOp LLM its agent stops at its iteration limit,
    so the status is `incomplete` (exit 1, as for any answer that is not a success), with the LLM's echo."""
    assert sent.returncode in (0, 1) and sent.stdout.strip(), sent.stderr[-800:]
    answer = json.loads(sent.stdout)
    assert answer["status"] in ("success", "incomplete") and "NoOpLLM" in json.dumps(answer["result"]), answer
    return answer


def compose_exec(root: Path, service: str, *argv: str) -> str:
    """The guide's `docker compose exec …`, with the command line the sandbox recorded for this stack."""
    command = (root / ".laddr-sandbox" / "compose" / "compose-command").read_text().split()
    proc = subprocess.run([*command, "exec", "-T", service, *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def down(root: Path, cwd: Path) -> None:
    ok(sandbox(cwd, "--project", str(root), "down"))
    assert leftovers(compose_project_name(root)) == []


# -- on Kafka: the guide's topics, the project's own workers, scale, down -----------------------------
def test_up_on_kafka_runs_the_projects_own_workers_with_the_guides_topics(local_images, docker_compose, laddr_project,
                                                                           tmp_path) -> None:
    root, cwd = laddr_project, tmp_path / "cwd"
    cwd.mkdir()
    before = {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}
    name = compose_project_name(root)
    try:
        t0 = time.monotonic()
        ok(sandbox(cwd, "--runtime", "compose", "--project", str(root), "up", "--backend", "kafka"))
        print(f"\nup on Kafka (project image cached): {time.monotonic() - t0:.1f}s")
        assert set(compose_exec(root, "kafka", "kafka-topics", "--list", "--bootstrap-server", "localhost:9092").split()) >= TOPICS
        for agent in GUIDE_AGENTS:
            running = containers(name, f"label=com.docker.compose.service={agent}_worker", "status=running")
            assert len(running) == 1, agent
            command = running[0]["Config"]["Cmd"]
            assert f"agents.{agent}" in command and running[0]["Config"]["Image"].startswith("laddr-sandbox/project:"), command
            env = dict(e.split("=", 1) for e in running[0]["Config"]["Env"])
            assert env["QUEUE_BACKEND"] == "kafka" and env["KAFKA_BOOTSTRAP"] == "kafka:9092"
            assert env[f"LLM_BACKEND_{agent.upper()}"] == "noop"  # no LLM key is set
        # minio and the dashboard are left out (no image of them here; the sandbox needs neither); no redis on Kafka
        services = {c["Config"]["Labels"]["com.docker.compose.service"] for c in containers(name)}
        assert not services & {"minio", "dashboard", "redis"}, services
        status = ok(sandbox(cwd, "--project", str(root), "status"))
        assert "compose runtime · backend KAFKA" in status and "researcher_worker" in status
        ok(sandbox(cwd, "--project", str(root), "scale", "researcher_worker=2"))
        assert len(containers(name, "label=com.docker.compose.service=researcher_worker", "status=running")) == 2
        logs = ok(sandbox(cwd, "--project", str(root), "logs", "researcher_worker", "--tail", "20"))
        assert "researcher_worker-1   | " in logs  # tagged by replica, as the sandbox's own workers' are
    finally:
        down(root, cwd)
    # the user's files are as they were (the sandbox's own are under .laddr-sandbox/; Laddr itself writes laddr.db)
    after = {p.name: p.read_bytes() for p in root.iterdir() if p.is_file() and p.name != "laddr.db"}
    assert after == before


# -- on Redis: two projects at once, send, kill, restart, switch -----------------------------------------
def test_two_projects_on_redis_answer_and_never_touch_each_other(local_images, docker_compose, laddr_template,
                                                                  tmp_path) -> None:
    a, b, cwd = tmp_path / "a" / "demo", tmp_path / "b" / "demo", tmp_path / "cwd"
    for root in (a, b):
        shutil.copytree(laddr_template, root, symlinks=True)
    cwd.mkdir()
    names = compose_project_name(a), compose_project_name(b)
    assert names[0] != names[1]  # same folder name, different paths
    try:
        for root in (a, b):
            ok(sandbox(cwd, "--runtime", "compose", "--project", str(root), "up", "--backend", "redis"))
        ids = [{c["Id"] for c in containers(n)} for n in names]
        assert ids[0] and ids[1] and not ids[0] & ids[1]
        # each project's own redis on its own 127.0.0.1 port
        ports = [next(s["ports"] for s in json.loads(ok(sandbox(cwd, "--project", str(r), "status", "--json")))["services"]
                      if s["name"] == "redis") for r in (a, b)]
        assert ports[0] and ports[1] and ports[0] != ports[1]

        # the project's real Laddr worker answers `send` (matched by its Redis key, as Laddr's own client does)
        sent = sandbox(cwd, "--project", str(a), "send", "researcher", '{"query": "test"}', "--json", "--timeout", "30",
                       timeout=120)
        answered(sent)
        assert "matched by its Redis key" in sent.stderr, sent.stderr
        # restart and kill one replica (the runtime brings it back)
        ok(sandbox(cwd, "--project", str(a), "restart", "analyzer_worker"))
        ok(sandbox(cwd, "--project", str(a), "kill", "researcher_worker"))
        # taking b down leaves a as it was
        down(b, cwd)
        assert {c["Id"] for c in containers(names[0], "status=running")} == ids[0]
        # the guide's switch with --migrate, on the project's own file: the six topics, and back
        ok(sandbox(cwd, "--project", str(a), "switch", "kafka", "--migrate", timeout=600))
        assert set(compose_exec(a, "kafka", "kafka-topics", "--list", "--bootstrap-server", "localhost:9092").split()) >= TOPICS
        env = containers(names[0], "label=com.docker.compose.service=writer_worker", "status=running")[0]["Config"]["Env"]
        assert "QUEUE_BACKEND=kafka" in env
        # on Kafka the answer comes back too, with the one line about Laddr 0.9.6's unmatched Kafka answers
        sent = sandbox(cwd, "--project", str(a), "send", "researcher", '{"query": "test"}', "--json", "--timeout", "60",
                       timeout=180)
        answered(sent)
        assert "blocker" in sent.stderr, sent.stderr
    finally:
        for root in (a, b):
            down(root, cwd)


# -- bad input: one line, exit 2 ------------------------------------------------------------------
def test_a_folder_that_is_not_a_laddr_project_is_one_line(tmp_path) -> None:
    (tmp_path / "notaproject").mkdir()
    proc = sandbox(tmp_path, "--runtime", "compose", "--project", str(tmp_path / "notaproject"), "up")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "laddr.yml" in proc.stderr, proc.stderr


@pytest.mark.parametrize("broken, says", [
    ("services:\n  api: [unclosed\n", "yaml"),  # does not parse
    ("services:\n  coordinator_worker:\n    image: x\n    command: python -m agents.coordinator\n    ports: 12\n",
     "ports"),  # parses, but Compose refuses it
], ids=["does-not-parse", "fails-compose-config"])
def test_a_project_compose_file_compose_refuses_is_one_line(local_images, laddr_project, tmp_path, broken, says) -> None:
    (laddr_project / "docker-compose.yml").write_text(broken)
    proc = sandbox(tmp_path, "--runtime", "compose", "--project", str(laddr_project), "up", "--backend", "redis")
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith(("  ·", "starting", "left out"))]
    assert len(lines) == 1 and says in lines[0].lower() and "docker-compose.yml" in lines[0], proc.stderr
    assert leftovers(compose_project_name(laddr_project)) == []


# -- the wheel carries compose/: an installed sandbox runs --runtime compose from any folder -------------
def test_an_installed_wheel_runs_the_compose_runtime_from_an_empty_folder(local_images, tmp_path) -> None:
    src = tmp_path / "src"
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (REPO / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, src / f)
    ok(subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path / "dist"), str(src)],
                      capture_output=True, text=True, timeout=300))
    wheel = next((tmp_path / "dist").glob("laddr_sandbox-*.whl"))
    venv = tmp_path / "venv"
    ok(subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True, timeout=120))
    ok(subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", f"{wheel}[docker]"],
                      capture_output=True, text=True, timeout=600))
    site = next((venv / "lib").glob("python3.*/site-packages"))
    packaged = site / "sandbox" / "compose_files"
    assert (packaged / "docker-compose.yml").is_file() and (packaged / "docker-compose.kafka.yml").is_file()
    assert (packaged / "images" / "project" / "Dockerfile").is_file() and not (packaged / ".env").exists()
    assert "ghcr.io/kafbat/kafka-ui:v1." in (packaged / "docker-compose.kafka.yml").read_text()

    empty = tmp_path / "empty"
    empty.mkdir()
    installed = [str(venv / "bin" / "laddr-sandbox")]
    api, redis = free_ports(2)
    env = {"API_HOST_PORT": str(api), "REDIS_HOST_PORT": str(redis)}
    status = sandbox(empty, "--runtime", "compose", "status", cli=installed, env=env)
    assert status.returncode == 1 and "no sandbox stack is running" in status.stderr, status.stderr
    assert "missing" not in status.stderr
    try:
        ok(sandbox(empty, "--runtime", "compose", "up", "--backend", "redis", cli=installed, env=env))
        status = ok(sandbox(empty, "status", cli=installed, env=env))
        assert "compose runtime · backend REDIS" in status and "researcher_worker" in status
        # its compose .env is in the folder's state, never in the installed package
        assert (empty / ".laddr-sandbox" / "compose" / ".env").is_file() and not (packaged / ".env").exists()
    finally:
        ok(sandbox(empty, "--runtime", "compose", "down", cli=installed, env=env))
