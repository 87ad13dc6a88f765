"""The app must keep answering keys while the Messages and Logs views are flooded.

A responsiveness check, not a benchmark: bounds are generous and the times are printed.
"""

from __future__ import annotations

import asyncio
import gc
import time

from textual import events
from textual.widgets import TabbedContent

from sandbox.bus import TapMessage
from sandbox.runtime.base import LogLine
from sandbox.tui.demo_data import log_lines, messages
from sandbox.tui.logs_view import LogsView
from sandbox.tui.messages_view import MessagesView

# Not a speed check (bench/tui.py measures key latency): a key that has not switched the tab after
# this long means the UI is frozen under the flood.
FROZEN_S = 30.0
RATE = 20_000  # messages per second, and as many log lines


def fresh_messages(count: int, start: int = 0) -> list[TapMessage]:
    """New objects each time (so freeing old ones is part of what is measured)."""
    base = messages(10)
    out = []
    for i in range(count):
        m = base[i % len(base)]
        task_id = f"{start + i:08x}"
        when = m.timestamp + start + i
        out.append(TapMessage(m.channel, m.kind, when, bytes(m.raw), m.doc, task_id, m.agent, m.status, str(i)))
    return out


def fresh_lines(count: int, start: int = 0) -> list[LogLine]:
    base = log_lines(6)
    picked = (base[i % len(base)] for i in range(count))
    return [LogLine(b.service, b.replica, f"{b.text} #{start + i}", b.timestamp) for i, b in enumerate(picked)]


async def key_latency(pilot, key: str, tab: str) -> float:
    """Seconds from a key arriving (as from the terminal) until its tab is the active one.

    Not `pilot.press`: it waits for the process to go idle, which a flood never lets happen.
    """
    app = pilot.app
    tabs = app.main.query_one(TabbedContent)
    event = events.Key(key, key)
    event.set_sender(app)
    started = time.perf_counter()
    app._driver.send_message(event)
    while tabs.active != f"{tab}-tab":
        assert time.perf_counter() - started < FROZEN_S, f"key {key!r} did not open {tab} under the flood"
        await asyncio.sleep(0.001)
    return time.perf_counter() - started


async def test_keys_answer_under_a_flood(offline_app):
    app = offline_app
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        tap = app.main.query_one(MessagesView)
        logs = app.main.query_one(LogsView)
        app.main.query_one("#services").focus()

        # A burst: 50,000 of each at once.
        started = time.perf_counter()
        tap.add_messages(fresh_messages(50_000))
        logs.add_log_lines(fresh_lines(50_000))
        burst = [await key_latency(pilot, "3", "messages"), await key_latency(pilot, "2", "logs")]
        print(f"\nburst of 50,000 msgs + 50,000 lines: key answered in {max(burst) * 1000:.0f} ms "
              f"(fed in {(time.perf_counter() - started) * 1000:.0f} ms)")

        # A sustained flood: 20,000 msgs/s and 20,000 lines/s, keys pressed meanwhile.
        # The items are reused: making them is the broker client's cost, not the view's.
        pool_messages, pool_lines = fresh_messages(RATE), fresh_lines(RATE)
        stop = asyncio.Event()
        fed = 0

        async def feeder() -> None:
            nonlocal fed
            begun = time.perf_counter()
            while not stop.is_set():
                due = int((time.perf_counter() - begun) * RATE) - fed  # keep the rate whatever the loop does
                if due > 0:
                    chunk = min(due, RATE)
                    tap.add_messages(pool_messages[:chunk])
                    logs.add_log_lines(pool_lines[:chunk])
                    fed += chunk
                await asyncio.sleep(0.01)

        feeding = asyncio.create_task(feeder())
        flood_started = time.perf_counter()
        latencies = []
        for key, tab in [("3", "messages"), ("2", "logs")] * 6:
            latencies.append(await key_latency(pilot, key, tab))
            await asyncio.sleep(0.2)
        stop.set()
        await feeding
        seconds = time.perf_counter() - flood_started
        await pilot.pause(0.3)
        print(f"flood of {fed / seconds:,.0f} msgs/s + as many log lines/s for {seconds:.1f} s: "
              f"key latency max {max(latencies) * 1000:.0f} ms, "
              f"median {sorted(latencies)[len(latencies) // 2] * 1000:.0f} ms")
        # bounded: the table holds max_rows, the ring holds keep
        assert tap.live.row_count <= tap.max_rows
        assert tap.live.kept <= tap.keep
        assert logs.live.kept <= logs.max_lines
        assert tap.live.received == 50_000 + fed  # every item fed was taken in, none dropped


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * 4096 / 1e6


async def test_memory_stays_flat_over_a_million_messages(offline_app):
    app = offline_app
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        tap = app.main.query_one(MessagesView)
        app.main.action_show_tab("messages")
        tap.add_messages(fresh_messages(20_000))
        tap.flush()
        gc.collect()
        before = rss_mb()
        started = time.perf_counter()
        for start in range(0, 1_000_000, 10_000):
            tap.add_messages(fresh_messages(10_000, start))
            tap.flush()
            if start % 100_000 == 0:
                await pilot.pause()  # let it render now and then, as it would
        gc.collect()
        after = rss_mb()
        print(f"\n1,000,000 messages in {time.perf_counter() - started:.1f} s: RSS {before:.0f} MB -> {after:.0f} MB "
              f"({after - before:+.0f} MB); kept {tap.live.kept:,}, shown {tap.live.row_count:,}")
        assert tap.live.kept == tap.keep
        assert after - before < 150  # a million retained messages would be well over 1 GB
