"""A Laddr project made by the real `laddr init` (laddr==0.9.6 from PyPI), and a real Docker engine.

The venv with Laddr is made once and cached (sandbox.project.laddr_env); if it
cannot be made, or no Docker engine answers, the tests that need it fail with
the reason. They never skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.project.laddr_env import LaddrEnv, LaddrEnvError, laddr_venv

LADDR_VERSION = "0.9.6"
# `laddr init` makes coordinator and researcher; these make the guide's five.
ADDED_AGENTS = ("analyzer", "writer", "validator")
GUIDE_AGENTS = ("coordinator", "researcher", *ADDED_AGENTS)


def _run(cmd: list[str], cwd: Path, env: LaddrEnv) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("QUEUE_", "REDIS_", "KAFKA_", "LADDR_"))}
    environ["PATH"] = f"{env.root / 'bin'}:{environ.get('PATH', '')}"
    proc = subprocess.run(cmd, cwd=cwd, env=environ, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120)
    if proc.returncode != 0:
        pytest.fail(f"`{' '.join(cmd)}` failed (exit {proc.returncode}): {(proc.stderr or proc.stdout)[-500:]}")


@pytest.fixture(scope="session")
def laddr_env() -> LaddrEnv:
    try:
        return laddr_venv(LADDR_VERSION)
    except LaddrEnvError as exc:
        pytest.fail(f"cannot make a venv with laddr=={LADDR_VERSION} from PyPI: {exc}")


@pytest.fixture(scope="session")
def laddr_template(laddr_env: LaddrEnv, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`laddr init demo` + `laddr add agent analyzer|writer|validator`, made once per session."""
    parent = tmp_path_factory.mktemp("laddr-init")
    _run([str(laddr_env.laddr), "init", "demo", "--path", str(parent)], parent, laddr_env)
    root = parent / "demo"
    if not (root / "laddr.yml").is_file():  # `--path` is the parent folder in 0.9.6
        found = [p.parent for p in parent.rglob("laddr.yml")]
        if not found:
            pytest.fail(f"`laddr init demo --path {parent}` made no laddr.yml")
        root = found[0]
    for agent in ADDED_AGENTS:
        # Without these flags `laddr add agent` prompts for each (and aborts on a closed stdin).
        _run([str(laddr_env.laddr), "add", "agent", agent, "--role", f"{agent.title()}", "--goal", f"{agent} things",
              "--backstory", "A test agent", "--llm-provider", "openai", "--llm-model", "gpt-4o-mini"],
             root, laddr_env)
    return root


@pytest.fixture
def laddr_project(laddr_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the session's `laddr init` project, this test's to change."""
    dest = tmp_path / "demo"
    shutil.copytree(laddr_template, dest, symlinks=True)
    return dest


@pytest.fixture(scope="session")
def docker_compose() -> Iterator[list[str]]:
    """The `docker compose` command of an engine that answers."""
    docker = shutil.which("docker")
    if not docker:
        pytest.fail("no `docker` command on PATH: run scripts/setup-docker.sh (see /tmp/setup-docker.log)")
    info = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=30)
    if info.returncode != 0:
        pytest.fail(f"no Docker engine answers: {(info.stderr or info.stdout).strip().splitlines()[-1:]}")
    version = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=30)
    if version.returncode != 0:
        pytest.fail(f"`docker compose` is not installed: {version.stderr.strip()}")
    yield [docker, "compose"]


def assert_on_kafka(services: dict, app: str) -> None:
    """The guide's Kafka settings on one app service of a (resolved or raw) compose file."""
    env = services[app]["environment"]
    assert env["QUEUE_BACKEND"] == "kafka" and env["KAFKA_BOOTSTRAP"] == "kafka:9092", app
    deps = services[app]["depends_on"]
    assert deps["kafka"]["condition"] == "service_healthy", app
    assert deps["kafka-init"]["condition"] == "service_completed_successfully", app
    assert "redis" not in deps and "postgres" not in deps, app
