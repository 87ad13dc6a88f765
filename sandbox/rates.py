"""Rates and trends from successive queue stats, the same meaning on both brokers:
tasks in per second (what was added to the agent's queue), answered per second (added minus
what still waits), and the waiting count over the last minutes as a sparkline."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from sandbox.bus import QueueStats

BARS = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    added: int
    waiting: int


@dataclass(frozen=True, slots=True)
class Rate:
    agent: str
    in_per_s: float
    answered_per_s: float
    waiting: int
    trend: str


class Rates:
    """Keeps `keep_s` of samples per agent; rates are over the last `span_s` of them."""

    def __init__(self, span_s: float = 5.0, keep_s: float = 300.0):
        self.span_s, self.keep_s = span_s, keep_s
        self.samples: dict[str, deque[Sample]] = {}

    def add(self, stats: list[QueueStats], now: float) -> None:
        for q in stats:
            kept = self.samples.setdefault(q.agent, deque())
            kept.append(Sample(now, q.added, q.waiting))
            while kept and now - kept[0].at > self.keep_s:
                kept.popleft()

    def rate(self, agent: str) -> Rate | None:
        kept = self.samples.get(agent)
        if not kept:
            return None
        last = kept[-1]
        first = next((s for s in kept if last.at - s.at <= self.span_s), last)
        dt = last.at - first.at
        added = last.added - first.added
        done = added - (last.waiting - first.waiting)
        return Rate(agent, added / dt if dt > 0 else 0.0, max(0.0, done) / dt if dt > 0 else 0.0,
                    last.waiting, sparkline([s.waiting for s in kept]))


def sparkline(values: list[int], width: int = 30) -> str:
    """The last `width` values as bars, scaled to the largest of them."""
    shown = values[-width:]
    top = max(shown, default=0)
    if top <= 0:
        return BARS[0] * len(shown)
    return "".join(BARS[min(len(BARS) - 1, round(v / top * (len(BARS) - 1)))] for v in shown)
