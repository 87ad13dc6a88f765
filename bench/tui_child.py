"""The TUI ingest benchmark's own process (so its memory is the app's alone).

`python -m bench.tui_child --phase flood|memory --seconds S --rate R --million N` prints one JSON line.
The app runs headless (`App.run_test()`) with no runtime; the Messages and Logs
views read streams as they read the tap and the log followers (on each view's
reading thread, `LiveView.keep_reading`), made there at the given rate (a chunk
every 10 ms, yielded one by one), while keys switch tabs and the time until the
switch shows is measured the way a key from the terminal arrives.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable

import orjson
from textual import events
from textual.widgets import TabbedContent

from sandbox.bus import describe_message
from sandbox.config import Settings
from sandbox.protocol import AGENTS, kafka_topic
from sandbox.runtime.base import LogLine


def make_messages(count: int, start: int = 0) -> list:
    out = []
    now = time.time()
    for i in range(start, start + count):
        agent = AGENTS[i % 5]
        if i % 2:
            doc = {"task_id": str(uuid.UUID(int=i)), "status": "success", "result": {"facts": ["a", "b"]},
                   "error": None, "created_at": now, "agent": agent, "worker_id": f"{agent}_worker-1"}
            raw, channel, kind = orjson.dumps(doc), "laddr.responses", "response"
        else:
            doc = {"task_id": str(uuid.UUID(int=i)), "agent_name": agent, "payload": {"query": f"message {i}"},
                   "created_at": now}
            raw, channel, kind = orjson.dumps(doc), kafka_topic(agent), "task"
        out.append(describe_message(channel, kind, raw, now + i * 1e-5, f"{i % 6}:{i}"))
    return out


def make_lines(count: int, start: int = 0) -> list[LogLine]:
    now = time.time()
    out = []
    for i in range(start, start + count):
        agent = AGENTS[i % 5]
        text = (f"2026-01-01 10:00:00,{i % 1000:03d} INFO sandbox.worker: task {uuid.UUID(int=i)} "
                f"{'received' if i % 2 else 'done success in 0.1 ms'}")
        out.append(LogLine(f"{agent}_worker", f"{agent}_worker-1", text, now))
    return out


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 1e6


def peak_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024 * 1.048576
    return float("nan")


async def key_latency(app, key: str, tab: str) -> float:
    """Seconds from a key arriving (as from the terminal driver) until its tab is the active one."""
    tabs = app.main.query_one(TabbedContent)
    event = events.Key(key, key)
    event.set_sender(app)
    started = time.perf_counter()
    app._driver.send_message(event)
    while tabs.active != f"{tab}-tab":
        await asyncio.sleep(0.001)
    return time.perf_counter() - started


LONG_GC_S = 0.1  # a collection this long is listed with its generation and thread


class Stalls:
    """The longest garbage-collection pause and event-loop stall while it is on (the causes of a slow key)."""

    def __init__(self) -> None:
        self.gc_max = 0.0
        self.gc_total = 0.0
        self.gc_full = 0
        self.gc_long: list[dict] = []  # collections over LONG_GC_S: which generation, on which thread
        self.loop_max = 0.0
        self._gc_started = 0.0
        self._task: asyncio.Task[None] | None = None

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            took = time.perf_counter() - self._gc_started
            self.gc_max = max(self.gc_max, took)
            self.gc_total += took
            self.gc_full += info.get("generation") == 2
            if took > LONG_GC_S:
                self.gc_long.append({"ms": round(1000 * took, 1), "generation": info.get("generation"),
                                     "collected": info.get("collected"), "thread": threading.current_thread().name})

    async def _watch_loop(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.005)
            self.loop_max = max(self.loop_max, time.perf_counter() - before - 0.005)

    def start(self) -> None:
        gc.callbacks.append(self._on_gc)
        self._task = asyncio.create_task(self._watch_loop())

    def stop(self) -> dict:
        gc.callbacks.remove(self._on_gc)
        if self._task is not None:
            self._task.cancel()
        return {"gc_max_ms": 1000 * self.gc_max, "gc_total_ms": 1000 * self.gc_total, "gc_full": self.gc_full,
                "gc_long": self.gc_long, "loop_stall_max_ms": 1000 * self.loop_max}


def paced(make: Callable[[int, int], list], rate: int, fed: list[int]) -> AsyncIterator:
    """A stream of fresh items at `rate`/s, made where it is read (as the tap decodes and the log followers
    make their lines); `fed[0]` counts them."""

    async def stream() -> AsyncIterator:
        begun = time.perf_counter()
        while True:
            due = int((time.perf_counter() - begun) * rate) - fed[0]  # keep the rate whatever the loop does
            if due > 0:
                chunk = min(due, rate)
                for item in make(chunk, fed[0]):
                    yield item
                    fed[0] += 1  # counted as read, as `received` counts them as handed over
            await asyncio.sleep(0.01)

    return stream()


def read(view, make: Callable[[int, int], list], add: Callable, rate: int, fed: list[int]):
    """The view reads a paced stream as it reads the tap or a service's logs (its reading thread)."""
    from sandbox.tui.live_view import READING

    opened = lambda: ("bench", paced(make, rate, fed))  # noqa: E731
    return view.run_worker(view.keep_reading(opened, add, ended="bench ended", lost="bench failed"),
                           group=READING, exclusive=True, exit_on_error=False)


async def flood(app, feed_messages: bool, feed_lines: bool, rate: int, seconds: float) -> dict:
    from sandbox.tui.logs_view import LogsView
    from sandbox.tui.messages_view import MessagesView

    tap, logs = app.main.query_one(MessagesView), app.main.query_one(LogsView)
    got_m, got_l = tap.live.received, logs.live.received
    fed_m, fed_l = [0], [0]

    stalls = Stalls()
    stalls.start()
    readers = []
    if feed_messages:
        readers.append((tap, read(tap, make_messages, tap.add_messages, rate, fed_m)))
    if feed_lines:
        readers.append((logs, read(logs, make_lines, logs.add_log_lines, rate, fed_l)))
    started = time.perf_counter()
    cpu0 = time.process_time()
    latencies = []
    while time.perf_counter() - started < seconds:
        for key, tab in (("3", "messages"), ("2", "logs")):
            latencies.append(await key_latency(app, key, tab))
            await asyncio.sleep(0.2)
    elapsed = time.perf_counter() - started
    received_m, received_l, fed = tap.live.received, logs.live.received, max(fed_m[0], fed_l[0])
    stalled = stalls.stop()
    cpu = time.process_time() - cpu0
    for view, worker in readers:
        view.stop_reading()
        with contextlib.suppress(Exception):  # cancelled: WorkerCancelled
            await worker.wait()
    await asyncio.sleep(0.3)  # the last flush
    return {
        "fed_per_s": fed / elapsed,
        "shown_messages_per_s": (received_m - got_m) / elapsed if feed_messages else None,
        "shown_lines_per_s": (received_l - got_l) / elapsed if feed_lines else None,
        "key_ms": [x * 1000 for x in latencies],
        "cpu_share": cpu / elapsed,
        **stalled,
    }


async def memory(app, total: int) -> dict:
    from sandbox.tui.logs_view import LogsView
    from sandbox.tui.messages_view import MessagesView

    tap, logs = app.main.query_one(MessagesView), app.main.query_one(LogsView)
    app.main.action_show_tab("messages")
    gc.collect()
    before = rss_mb()
    started = time.perf_counter()
    step = 10_000
    for start in range(0, total, step):
        tap.add_messages(make_messages(step, start))  # fresh objects: freeing old ones is part of it
        logs.add_log_lines(make_lines(step, start))
        tap.flush()
        logs.flush()
        if start % 100_000 == 0:
            await asyncio.sleep(0.05)  # let it render now and then, as it would
    await asyncio.sleep(0.3)
    gc.collect()
    return {"rss_before": before, "rss_after": rss_mb(), "rss_peak": peak_mb(), "fed": total,
            "seconds": time.perf_counter() - started, "kept_messages": tap.live.kept, "kept_lines": logs.live.kept}


async def main_async(phase: str, seconds: float, rate: int, million: int) -> dict:
    from sandbox.tui.app import SandboxApp

    app = SandboxApp(None, Settings(queue_backend="kafka"))
    out: dict = {}
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        if os.environ.get("BENCH_TUI_GC_THRESHOLD2"):  # an experiment: other full-collection thresholds than the app's
            first, second, _ = gc.get_threshold()
            gc.set_threshold(first, second, int(os.environ["BENCH_TUI_GC_THRESHOLD2"]))
        out["rss_idle"] = rss_mb()
        app.main.query_one("#services").focus()
        if phase == "flood":
            out["messages"] = await flood(app, True, False, rate, seconds)
            out["logs"] = await flood(app, False, True, rate, seconds)
            out["both"] = await flood(app, True, True, rate, seconds)
        else:  # a fresh process: the app's memory from its start to a million messages and lines
            out["memory"] = await memory(app, million)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.tui_child")
    p.add_argument("--phase", choices=("flood", "memory"), default="flood")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rate", type=int, default=20_000)
    p.add_argument("--million", type=int, default=1_000_000)
    args = p.parse_args(argv)
    print(json.dumps(asyncio.run(main_async(args.phase, args.seconds, args.rate, args.million))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
