"""What the benchmarks run against: the sandbox's local stack, or brokers plus workers.

- `local_stack()` is the stack the way `laddr-sandbox up` starts it: the local
  runtime with supervisord, a real redis-server / Kafka (KRaft) from the
  sandbox's own launchers, the api and one worker per agent.
- `WorkerSet` starts the same five workers (`python -m sandbox.worker <agent>`)
  against a broker started by `sandbox.brokers.testing`, for the cases the
  local runtime cannot configure (Kafka with its default rebalance delay, a
  fresh `laddr.responses` topic).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

from sandbox.bus import Bus, make_bus
from sandbox.config import Settings
from sandbox.protocol import AGENTS
from sandbox.runtime.base import worker_services

WORKER_SERVICES = worker_services(Settings())  # the five example agents'

ROOT = Path(__file__).resolve().parent.parent
# settings a developer may have exported must not steer a benchmark
LEAKY_ENV = ("REDIS_URL", "KAFKA_BOOTSTRAP", "API_PORT", "API_HOST", "QUEUE_BACKEND", "LADDR_ENV_FILE",
             "LADDR_STATE_DIR", "LADDR_AGENTS_DIR", "WORKER_CONCURRENCY", "LOG_LEVEL",
             *(f"SCALE_{s.upper()}" for s in WORKER_SERVICES))


def child_env() -> dict[str, str]:
    """The environment for a bench process started with `python -m bench.<module>`: this checkout first."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}


def scrub_env() -> None:
    for key in LEAKY_ENV:
        os.environ.pop(key, None)


def settings_for(backend: str, address: str, **overrides: object) -> Settings:
    base = Settings(queue_backend=backend, env_file=Path("/nonexistent/.env"))
    base = replace(base, redis_url=address) if backend == "redis" else replace(base, kafka_bootstrap=address)
    return replace(base, **overrides)


async def connected(settings: Settings, backend: str | None = None) -> Bus:
    bus = make_bus(settings, backend)
    await bus.connect()
    return bus


class WorkerSet:
    """The five sandbox workers as subprocesses, logging (at INFO, as deployed) to files."""

    def __init__(self, settings: Settings, log_dir: Path, agents: tuple[str, ...] = AGENTS):
        self.settings = settings
        self.log_dir = log_dir
        self.agents = agents
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def _env(self, worker_id: str) -> dict[str, str]:
        s = self.settings
        return {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
            "QUEUE_BACKEND": s.queue_backend,
            "REDIS_URL": s.redis_url,
            "KAFKA_BOOTSTRAP": s.kafka_bootstrap,
            "LADDR_ENV_FILE": "/nonexistent/.env",
            "LADDR_WORKER_ID": worker_id,
            "PYTHONUNBUFFERED": "1",
        }

    async def start(self, timeout: float = 120.0) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        started = time.time()
        for agent in self.agents:
            worker_id = f"{agent}_worker-bench"
            with (self.log_dir / f"{worker_id}.log").open("ab") as sink:
                self.procs[worker_id] = subprocess.Popen(
                    [sys.executable, "-m", "sandbox.worker", agent], env=self._env(worker_id), cwd=ROOT,
                    stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                )
        await self.wait_registered(started, timeout)

    async def wait_registered(self, since: float, timeout: float) -> None:
        bus = await connected(self.settings)
        try:
            deadline = time.monotonic() + timeout
            while True:
                for name, proc in self.procs.items():
                    if proc.poll() is not None:
                        raise RuntimeError(f"worker {name} exited ({proc.returncode}): see {self.log_dir / name}.log")
                agents = await bus.agents()
                if all(a in agents and agents[a].last_heartbeat >= since - 1 for a in self.agents):
                    # a registry entry is written just before the consume loop: give it a beat
                    await asyncio.sleep(0.5)
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"workers not registered after {timeout:.0f}s: see {self.log_dir}")
                await asyncio.sleep(0.1)
        finally:
            await bus.close()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self.procs.clear()

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs.values()]


@contextlib.asynccontextmanager
async def workers(settings: Settings, log_dir: Path) -> AsyncIterator[WorkerSet]:
    ws = WorkerSet(settings, log_dir)
    try:
        await ws.start()
        yield ws
    finally:
        await asyncio.to_thread(ws.stop)


def make_local(root: Path, settings: Settings | None = None):  # -> LocalRuntime
    """A local runtime whose project (and state folder, `.laddr-sandbox/`) is a temp folder."""
    from sandbox.runtime.local import LocalRuntime

    scrub_env()
    project = root / "project"
    project.mkdir(parents=True, exist_ok=True)
    return LocalRuntime(replace(settings or Settings(), env_file=project / ".env"), cwd=project)


async def finish_local(runtime) -> None:
    """down, then anything still carrying the folder's marker is ended."""
    from sandbox.runtime.local.procscan import marked_pids, terminate

    try:
        await asyncio.wait_for(runtime.down(), 120)
    except BaseException:  # noqa: BLE001 - whatever happened, leave nothing running
        pass
    finally:
        await asyncio.to_thread(terminate, marked_pids(runtime.dir.root), 2.0)


@contextlib.asynccontextmanager
async def temp_root(prefix: str) -> AsyncIterator[Path]:
    # short paths: supervisord's unix socket lives in the state folder
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def pids_of(runtime) -> dict[str, list[int]]:
    """PIDs of the local stack's processes by role: workers, broker, api, supervisord."""
    roles: dict[str, list[int]] = {"workers": [], "broker": [], "api": [], "supervisord": []}
    for p in runtime.sup.call_sync("getAllProcessInfo"):
        if not p["pid"]:
            continue
        if p["name"].rpartition("-")[0] in WORKER_SERVICES:
            roles["workers"].append(p["pid"])
        elif p["name"] in ("redis", "kafka"):
            roles["broker"].append(p["pid"])
        elif p["name"] == "api":
            roles["api"].append(p["pid"])
    roles["supervisord"].append(int(runtime.sup.call_sync("getPID")))
    return roles


def cpu_seconds(pids: list[int]) -> float:
    """user+system CPU seconds the processes used so far (from /proc; threads included)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total
