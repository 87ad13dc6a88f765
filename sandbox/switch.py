"""The backend switch, shared by the CLI (`switch`) and the TUI (`b`).

Order matters for "nothing is lost": the new broker comes up first, then the
api and workers stop (so nobody consumes the old queues), then every
unanswered task is copied to the new broker and only then acknowledged on the
old one, then the apps start on the new broker, then the old broker stops.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sandbox.bus import Bus, QueueStats, make_bus
from sandbox.protocol import agent_of_channel
from sandbox.runtime.base import Progress, Runtime, StackNotRunning, no_progress


class PendingTasks(Exception):
    """Tasks wait on the old broker and the caller chose neither migrate nor force."""

    def __init__(self, backend: str, per_agent: dict[str, int]):
        self.backend = backend
        self.per_agent = per_agent
        self.count = sum(per_agent.values())
        detail = ", ".join(f"{agent}: {n}" for agent, n in per_agent.items())
        super().__init__(
            f"{self.count} task(s) still pending on {backend} ({detail}); "
            "use --migrate to move them to the new broker or --force to leave them behind"
        )


@dataclass
class SwitchReport:
    source: str
    target: str
    pending_before: int = 0
    moved: int = 0
    seconds: float = 0.0
    per_agent: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        if self.source == self.target:
            return f"already on {self.target}"
        moved = f", moved {self.moved} pending task(s)" if self.moved else ""
        return f"switched {self.source} -> {self.target} in {self.seconds:.1f}s{moved}"


async def _agents_with_queues(bus: Bus, agents: tuple[str, ...]) -> list[str]:
    """The stack's agents plus any other agent that has a queue on the broker."""
    found = [agent_of_channel(c) for c in await bus.channels()]
    return list(dict.fromkeys([*agents, *(a for a in found if a)]))


async def _pending_stats(runtime: Runtime) -> list[QueueStats]:
    backend = await runtime.current_backend()
    if backend is None:
        raise StackNotRunning(runtime.name)
    async with make_bus(runtime.bus_settings(backend)) as bus:
        return await bus.queue_stats(await _agents_with_queues(bus, runtime.settings.agents))


async def count_pending(runtime: Runtime) -> dict[str, int]:
    """Tasks not yet answered, per agent, on the broker the stack uses now."""
    return {s.agent: s.waiting for s in await _pending_stats(runtime) if s.waiting}


@dataclass
class WaitingTasks:
    """The unanswered tasks of a switch, told apart: held by a live worker (they finish before the
    workers stop) or queued / held by a dead worker (a migration moves them)."""

    in_progress: dict[str, int] = field(default_factory=dict)
    queued: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.in_progress.values()) + sum(self.queued.values())


def split_waiting(stats: list[QueueStats], concurrency: int, claim_idle_ms: int) -> WaitingTasks:
    """Redis: a consumer idle longer than the reclaim window is dead. Kafka: a group member is live;
    it works on at most `concurrency` of the uncommitted tasks of its partitions at once."""
    found = WaitingTasks()
    for s in stats:
        if not s.waiting:
            continue
        live = [c for c in s.consumers if s.partitions is not None or (c.idle_ms or 0) < claim_idle_ms]
        busy = min(s.waiting, sum(min(c.pending, concurrency) for c in live))
        if busy:
            found.in_progress[s.agent] = busy
        if s.waiting - busy:
            found.queued[s.agent] = s.waiting - busy
    return found


async def count_waiting(runtime: Runtime) -> WaitingTasks:
    """count_pending, told apart into in progress and queued (the TUI's switch dialog)."""
    settings = runtime.settings
    return split_waiting(await _pending_stats(runtime), settings.worker_concurrency, settings.claim_idle_ms)


async def migrate_pending(source: Bus, target: Bus, progress: Progress = no_progress) -> dict[str, int]:
    """Copy every unanswered task from one broker to the other; acknowledge each after the copy."""
    agents = await _agents_with_queues(source, source.settings.agents)
    await target.ensure_topology(agents)
    moved: dict[str, int] = {}
    for agent in agents:

        async def sink(raw: bytes, agent: str = agent) -> None:
            await target.publish_moved(agent, raw)

        count = await source.drain_pending(agent, sink)
        if count:
            moved[agent] = count
            progress(f"moved {count} task(s) of {agent}")
    return moved


async def switch_backend(
    runtime: Runtime,
    target: str,
    *,
    migrate: bool = False,
    force: bool = False,
    keep_old: bool = False,
    progress: Progress = no_progress,
    before_apps: Callable[[str], Awaitable[None]] | None = None,
) -> SwitchReport:
    """`before_apps(target)` runs once the tasks are moved and before any worker runs on the new
    broker: a client that must see every answer there (the TUI's requester) connects then."""
    started = time.perf_counter()
    source = await runtime.current_backend()
    if source is None:
        raise StackNotRunning(runtime.name)
    report = SwitchReport(source=source, target=target)
    if source == target:
        return report
    pending = await count_pending(runtime)
    report.pending_before = sum(pending.values())
    if pending and not (migrate or force):
        raise PendingTasks(source, pending)

    progress(f"starting the {target} broker")
    await runtime.start_broker(target, progress)
    progress("stopping the api and workers")
    await runtime.stop_apps(progress)
    if migrate and pending:
        progress(f"moving {report.pending_before} pending task(s) {source} -> {target}")
        async with make_bus(runtime.bus_settings(source)) as old, make_bus(runtime.bus_settings(target)) as new:
            report.per_agent = await migrate_pending(old, new, progress)
        report.moved = sum(report.per_agent.values())
    runtime.record_backend(target)
    if before_apps is not None:
        await before_apps(target)
    progress(f"starting the api and workers on {target}")
    await runtime.start_apps(target, progress)
    if not keep_old:
        progress(f"stopping the {source} broker")
        await runtime.stop_broker(source, progress)
    report.seconds = time.perf_counter() - started
    return report

