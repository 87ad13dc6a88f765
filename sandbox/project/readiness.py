"""Measurements behind `laddr-sandbox check`: what a project's agents do on one broker.

Each function takes a connected Bus and talks to real workers; nothing is assumed:
answers are counted as they arrive, and what a `kill -9` loses is counted too.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sandbox.bus import Bus, BusError, RequestTimeout
from sandbox.protocol import Response, new_task_id


@dataclass(slots=True)
class AgentFigures:
    """One agent on one broker."""

    agent: str
    backend: str
    sent: int = 0
    matched: int = 0
    matched_by_job_id: int = 0  # answers that carried no task id (Laddr 0.9.6 on Kafka)
    statuses: dict[str, int] = field(default_factory=dict)
    p50_ms: float | None = None
    p99_ms: float | None = None
    tasks_per_s: float | None = None
    error: str | None = None


@dataclass(slots=True)
class LossFigures:
    """What a `kill -9` of a busy worker cost: sent, answered, lost."""

    backend: str
    worker: str  # "laddr <agent>" or "sandbox"
    sent: int = 0
    answered: int = 0
    duplicates: int = 0
    error: str | None = None

    @property
    def lost(self) -> int:
        return self.sent - self.answered


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _count(figures: AgentFigures, response: Response) -> None:
    figures.matched += 1
    if response.matched_by == "job_id":
        figures.matched_by_job_id += 1
    figures.statuses[response.status] = figures.statuses.get(response.status, 0) + 1


async def measure_agent(bus: Bus, agent: str, rounds: int, burst: int, timeout: float) -> AgentFigures:
    """`rounds` requests one after another (round trip), then `burst` at once (tasks/s)."""
    figures = AgentFigures(agent=agent, backend=bus.backend)
    times: list[float] = []
    for i in range(rounds):
        figures.sent += 1
        started = time.perf_counter()
        try:
            response = await bus.request(agent, {"query": f"readiness check {i}"}, timeout=timeout)
        except RequestTimeout:
            continue
        except BusError as exc:
            figures.error = str(exc)
            return figures
        times.append((time.perf_counter() - started) * 1000)
        _count(figures, response)
    if times:
        figures.p50_ms, figures.p99_ms = statistics.median(times), percentile(times, 0.99)
    if burst and figures.matched:
        started = time.perf_counter()
        results = await asyncio.gather(
            *(bus.request(agent, {"query": f"burst {i}"}, timeout=timeout) for i in range(burst)),
            return_exceptions=True,
        )
        elapsed = time.perf_counter() - started
        answered = [r for r in results if isinstance(r, Response)]
        figures.sent += burst
        for response in answered:
            _count(figures, response)
        figures.tasks_per_s = len(answered) / elapsed if elapsed > 0 else None
    return figures


async def measure_kill_loss(
    bus: Bus, agent: str, worker: str, payload: dict, kill: Callable[[], Awaitable[None]], tasks: int, settle_s: float
) -> LossFigures:
    """Queue `tasks`, `kill -9` the worker once it is answering, let it come back, count answers."""
    figures = LossFigures(backend=bus.backend, worker=worker, sent=tasks)
    ids = [new_task_id() for _ in range(tasks)]
    waiters = {task_id: await bus.expect(task_id) for task_id in ids}  # before anything goes out
    try:
        for i, task_id in enumerate(ids):
            await bus.publish_task(agent, {**payload, "n": i}, task_id=task_id)
        done, _ = await asyncio.wait(waiters.values(), return_when=asyncio.FIRST_COMPLETED, timeout=settle_s)
        if not done:
            figures.error = f"no answer within {settle_s:.0f}s before the kill"
        else:
            try:
                await kill()
            except Exception as exc:  # noqa: BLE001 - reported in the table, the rest still measured
                figures.error = f"kill failed: {exc}"
        await asyncio.wait(waiters.values(), timeout=settle_s)
        figures.answered = sum(1 for w in waiters.values() if w.done() and not w.exception())
    finally:
        for task_id in ids:
            bus.forget(task_id)
    return figures
