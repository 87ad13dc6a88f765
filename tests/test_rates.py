"""Rates and trends (status --watch): pure arithmetic, then against a real load on both brokers."""

from __future__ import annotations

import asyncio
import time

from sandbox.bus import Bus, QueueStats
from sandbox.config import Settings
from sandbox.rates import Rates, sparkline
from tests.procs import start_worker, unique_agent, write_agent


def stats(agent: str, added: int, waiting: int) -> list[QueueStats]:
    return [QueueStats(agent=agent, channel="c", added=added, lag=waiting)]


def test_in_and_answered_per_second_from_two_looks() -> None:
    rates = Rates(span_s=10)
    rates.add(stats("a", 100, 10), 0.0)
    rates.add(stats("a", 300, 30), 10.0)  # 200 in, the backlog grew by 20: 180 answered
    rate = rates.rate("a")
    assert rate is not None and (rate.in_per_s, rate.answered_per_s, rate.waiting) == (20.0, 18.0, 30)
    assert rates.rate("nobody") is None


def test_rates_use_only_the_last_span_and_keep_the_trend() -> None:
    rates = Rates(span_s=5, keep_s=60)
    for t in range(0, 31):
        rates.add(stats("a", 10 * t if t < 20 else 200 + 50 * (t - 20), t % 4), float(t))
    rate = rates.rate("a")
    assert rate is not None and rate.in_per_s == 50.0  # the last 5 s only
    assert len(rate.trend) == 30 and set(rate.trend) <= set("▁▂▃▄▅▆▇█")


def test_sparkline_scales_to_its_largest_value() -> None:
    assert sparkline([0, 0]) == "▁▁" and sparkline([0, 4, 8]) == "▁▅█"


async def test_rates_match_a_real_load_within_a_fifth(settings: Settings, bus: Bus, tmp_path) -> None:
    """A paced load with a real worker answering: the rate shown is what was sent in that window."""
    agent = unique_agent("rate")
    write_agent(tmp_path / "agents", agent)
    await bus.ensure_topology([agent], partitions=2)
    worker = start_worker(agent, settings, tmp_path, LADDR_AGENTS_DIR=str(tmp_path / "agents"))
    try:
        worker.wait_for("serving agent", 60)
        rates = Rates(span_s=60)
        sent = 0
        rates.add(await bus.queue_stats([agent]), time.monotonic())
        started = time.monotonic()
        while time.monotonic() - started < 6.0:  # about 40 tasks/s
            await bus.publish_task(agent, {"n": sent})
            sent += 1
            await asyncio.sleep(0.025)
        rates.add(await bus.queue_stats([agent]), time.monotonic())
        elapsed = time.monotonic() - started
        rate = rates.rate(agent)
        assert rate is not None
        produced = sent / elapsed  # measured by the load itself, not its nominal pace
        assert abs(rate.in_per_s - produced) <= 0.2 * produced, (rate, produced)
        assert rate.answered_per_s <= rate.in_per_s + 0.2 * produced and rate.answered_per_s > 0, rate
    finally:
        assert worker.terminate() == 0
