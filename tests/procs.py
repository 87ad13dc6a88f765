"""Helpers that run the sandbox's real programs (workers, api) as subprocesses in tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from sandbox.config import Settings

ROOT = Path(__file__).resolve().parent.parent

AGENT_TEMPLATE = '''
import os

from sandbox.agents import agent, simulate


@agent(name="{name}", role="Test agent", goal="Echo its inputs")
async def echo(inputs, ctx):
    if inputs.get("crash_worker"):  # a task that kills whichever worker runs it
        os._exit(3)
    await simulate(inputs)
    return {{"echo": inputs, "delivery": ctx.delivery_count, "worker": ctx.worker_id}}
'''


def unique_agent(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def write_agent(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.py"
    path.write_text(AGENT_TEMPLATE.format(name=name))
    return path


def broker_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "QUEUE_BACKEND": settings.queue_backend,
        "REDIS_URL": settings.redis_url,
        "KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "LADDR_ENV_FILE": "/nonexistent/.env",  # tests never read a developer's .env
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


@dataclass
class Proc:
    popen: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.popen.poll() is not None:
                raise AssertionError(f"process exited ({self.popen.returncode}) before logging {text!r}:\n{self.output()[-3000:]}")
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not logged within {timeout}s:\n{self.output()[-3000:]}")

    def terminate(self, timeout: float = 30.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"process did not stop within {timeout}s on SIGTERM:\n{self.output()[-3000:]}")

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(10)


def start(argv: list[str], env: dict[str, str], log: Path) -> Proc:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as sink:
        popen = subprocess.Popen(
            [sys.executable, *argv], env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT
        )
    return Proc(popen, log)


def start_worker(agent: str, settings: Settings, log_dir: Path, worker_id: str | None = None, **env: str) -> Proc:
    worker_id = worker_id or f"{agent}_worker-{uuid.uuid4().hex[:6]}"
    return start(
        ["-m", "sandbox.worker", agent],
        broker_env(settings, LADDR_WORKER_ID=worker_id, **env),
        log_dir / f"{worker_id}.log",
    )


class LineReader:
    """Collects a child's stdout lines on a thread, so a test can wait for one without blocking."""

    def __init__(self, popen: subprocess.Popen):
        import threading

        self.popen = popen
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.popen.stdout:  # type: ignore[union-attr]
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not printed within {timeout}s; got:\n" + "\n".join(self.lines[-30:]))
