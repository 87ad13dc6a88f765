"""choose_runtime(): launch opens the local runtime wherever Docker is; auto picks Compose
only where it can actually run a stack, else local with the reason in one line.

Real engine and locally built images (scripts/setup-docker.sh); the CLI case runs
a real local stack.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.config import Settings, write_env
from sandbox.runtime import choose_runtime, docker_answers
from sandbox.runtime.compose.images import COMPOSE_DIR, local_image_env
from tests.procs import ROOT

pytestmark = pytest.mark.timeout(300)


def need_engine() -> None:
    if not shutil.which("docker") or not docker_answers(timeout=3):
        pytest.fail("no Docker engine answers: run scripts/setup-docker.sh first", pytrace=False)


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A sandbox folder with no stack; its compose .env is named by LADDR_COMPOSE_ENV_FILE (absent at first)."""
    for key in ("LADDR_STATE_DIR", "LADDR_COMPOSE_PROJECT", "LADDR_COMPOSE_DIR", "DOCKER_HOST", "QUEUE_BACKEND"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LADDR_COMPOSE_ENV_FILE", str(tmp_path / "compose.env"))
    return tmp_path


def compose_env(folder: Path, **values: str) -> Path:
    env = folder / "compose.env"
    shutil.copyfile(COMPOSE_DIR / ".env.example", env)
    write_env(env, {"COMPOSE_PROFILES": "", **values})
    return env


def choose(kind: str | None, default: str = "auto", backend: str = "redis") -> tuple[str, list[str]]:
    said: list[str] = []
    runtime = choose_runtime(kind, Settings(env_file=Path(".env")), default=default, backend=backend, say=said.append)
    return runtime.name, said


def test_auto_picks_compose_where_it_can_run_and_launch_still_opens_local(folder: Path) -> None:
    need_engine()
    compose_env(folder, **local_image_env())
    assert choose("auto") == ("compose", [])
    assert choose(None, default="local") == ("local", [])  # make launch: the embedded default


def test_auto_without_the_compose_env_file_is_local_saying_why(folder: Path) -> None:
    name, said = choose("auto")
    assert name == "local" and len(said) == 1
    assert said[0].startswith("runtime auto: local, as Compose cannot run here (")
    assert f"no {folder / 'compose.env'}" in said[0] or "no Docker engine answers" in said[0]


def test_auto_with_an_image_that_is_not_here_is_local_saying_which(folder: Path) -> None:
    need_engine()
    compose_env(folder, **{**local_image_env(), "REDIS_IMAGE": "laddr-sandbox/no-such-image:0"})
    assert choose("auto") == ("local", ["runtime auto: local, as Compose cannot run here "
                                        "(image laddr-sandbox/no-such-image:0 (REDIS_IMAGE) is not built)"])
    compose_env(folder, **{**local_image_env(), "KAFKA_IMAGE": "laddr-sandbox/no-such-image:0"})
    assert choose("auto") == ("compose", [])  # a Redis stack does not need Kafka's image
    assert choose("auto", backend="kafka")[0] == "local"


def test_auto_without_an_engine_is_local_saying_so(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    compose_env(folder, **local_image_env())
    monkeypatch.setenv("DOCKER_HOST", f"unix://{folder}/no-engine.sock")
    assert choose("auto") == ("local", ["runtime auto: local, as Compose cannot run here (no Docker engine answers)"])


def test_up_with_runtime_auto_falls_back_to_local_in_one_line_and_down_works(folder: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUEUE_", "REDIS_", "KAFKA_", "LADDR_"))}
    env |= {"PYTHONPATH": str(ROOT), "NO_COLOR": "1", "LADDR_COMPOSE_ENV_FILE": str(folder / "compose.env")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sandbox.cli", *args], cwd=folder, env=env,
                              capture_output=True, text=True, timeout=180)

    try:
        up = cli("up", "--runtime", "auto", "--backend", "redis")
        assert up.returncode == 0, up.stderr
        reasons = [ln for ln in up.stderr.splitlines() if "runtime auto: local" in ln]
        assert len(reasons) == 1 and "Compose cannot run here (" in reasons[0], up.stderr
        assert "(local runtime)" in up.stderr and "Traceback" not in up.stderr
    finally:
        down = cli("down")
    assert down.returncode == 0 and "stack down" in down.stderr, down.stderr
