"""`laddr-sandbox check --project DIR`: the project's agents on Redis and on Kafka, measured.

Each broker gets a stack of its own (the local runtime in a scratch folder: its own
supervisord, broker and ports, so a stack the user runs is not touched), the
project's real Laddr workers in it, and for comparison one sandbox worker. Nothing
is assumed: answers are counted, and so is what a `kill -9` of a busy worker loses.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from sandbox.bus import Bus, make_bus
from sandbox.bus.presence import LADDR, agent_presence
from sandbox.config import Settings
from sandbox.project.layout import LaddrProject
from sandbox.project.readiness import measure_agent, measure_kill_loss
from sandbox.project.report import Readiness, find_blockers
from sandbox.runtime import make_runtime

PROBE = "sandbox_probe"
PROBE_AGENT = '''
from sandbox.agents import agent, simulate


@agent(name="{name}", role="Probe", goal="The sandbox's own worker, for comparison")
async def probe(inputs, ctx):
    await simulate(inputs)
    return {{"query": inputs.get("query"), "delivery": ctx.delivery_count}}
'''
PROBE_DELAY_MS = 500  # long enough that the probe is busy when it is killed


async def run_check(settings: Settings, backends: list[str], progress: Callable[[str], None], *,
                    rounds: int = 10, burst: int = 10, loss_tasks: int = 20, timeout: float = 60.0) -> Readiness:
    project = LaddrProject.open(settings.project)
    report = Readiness(project=str(project.root), agents=list(project.agent_names), backends=list(backends))
    with tempfile.TemporaryDirectory(prefix="laddr-check-") as scratch:
        for backend in backends:
            folder = Path(scratch) / backend
            folder.mkdir()
            try:
                await _check_backend(report, settings, backend, folder, progress, rounds, burst, loss_tasks, timeout)
            except Exception as exc:  # noqa: BLE001 - one broker failing still reports the other
                report.problems[backend] = str(exc) or type(exc).__name__
    report.blockers = find_blockers(report, _text(project.requirements_file))
    return report


async def _check_backend(report: Readiness, settings: Settings, backend: str, folder: Path,
                         progress: Callable[[str], None], rounds: int, burst: int, loss_tasks: int,
                         timeout: float) -> None:
    runtime = make_runtime("local", replace(settings, env_file=folder / ".env", queue_backend=backend), cwd=folder)
    progress(f"{backend}: starting a stack of the project's workers (scratch folder {folder})")
    try:
        await runtime.up(backend, lambda line: progress(f"{backend}: {line}"))
        async with make_bus(runtime.bus_settings(backend)) as bus:
            report.registry[backend] = {p.name: _registry_cell(p, backend) for p in
                                        await agent_presence(bus, settings.heartbeat_s) if p.name in report.agents}
            for agent in report.agents:
                progress(f"{backend}: {agent}: {rounds} round trips, then {burst} at once")
                report.figures.append(await measure_agent(bus, agent, rounds, burst, timeout))
            victim = "researcher" if "researcher" in report.agents else report.agents[0]
            progress(f"{backend}: kill -9 of a busy Laddr {victim} worker ({loss_tasks} tasks)")
            report.losses.append(await measure_kill_loss(
                bus, victim, f"laddr {victim}", {"query": "loss check"},
                lambda: runtime.kill_replica(f"{victim}_worker", 1), loss_tasks, timeout))
            progress(f"{backend}: the same kill -9 of the sandbox's own worker")
            report.losses.append(await _probe_loss(bus, runtime.bus_settings(backend), folder, loss_tasks, timeout))
    finally:
        progress(f"{backend}: taking the scratch stack down")
        await runtime.down(lambda line: None)


def _registry_cell(p, backend: str) -> str:  # type: ignore[no-untyped-def]
    if p.registry is not None:
        return f"{p.registry_kind} entry, {'alive' if p.registry_alive else 'stale'}"
    if p.consumers and LADDR in p.kinds:
        where = "laddr.registry" if backend == "kafka" else "the registry"
        return f"not in {where}; found by its {'topic' if backend == 'kafka' else 'stream'} and group"
    return "not found"


async def _probe_loss(bus: Bus, bus_settings: Settings, folder: Path, tasks: int, timeout: float):  # type: ignore[no-untyped-def]
    """The sandbox's worker (acknowledges after answering) under the same kill -9."""
    agents = folder / "probe-agents"
    agents.mkdir(exist_ok=True)
    (agents / f"{PROBE}.py").write_text(PROBE_AGENT.format(name=PROBE))
    await bus.ensure_topology([PROBE], bus_settings.kafka_partitions)
    env = {**os.environ, "QUEUE_BACKEND": bus.backend, "REDIS_URL": bus_settings.redis_url,
           "KAFKA_BOOTSTRAP": bus_settings.kafka_bootstrap, "LADDR_AGENTS_DIR": str(agents),
           "LADDR_ENV_FILE": str(folder / ".env"), "LADDR_CLAIM_IDLE_MS": "2000", "LADDR_PROJECT": "",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    (folder / ".env").touch()
    log = (folder / "probe.log").open("ab")

    def start() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "sandbox.worker", PROBE], env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    worker = [start()]

    async def kill() -> None:
        worker[0].send_signal(signal.SIGKILL)
        await asyncio.to_thread(worker[0].wait)
        worker[0] = start()

    try:
        return await measure_kill_loss(bus, PROBE, "sandbox worker", {"query": "loss check",
                                       "simulate": {"delay_ms": PROBE_DELAY_MS}}, kill, tasks, timeout)
    finally:
        worker[0].terminate()
        await asyncio.to_thread(worker[0].wait)
        log.close()


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
