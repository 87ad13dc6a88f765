"""TUI Messages and Logs views ingesting 20,000 messages/s: key latency and memory.

Runs `bench.tui_child` in its own processes (so the memory measured is the
app's): the real `SandboxApp` headless through `App.run_test()`, its
MessagesView fed with TapMessages and its LogsView with log lines at 20,000/s
each (alone, then both at once) while keys switch tabs; then, in a fresh
process, 1,000,000 messages and 1,000,000 log lines fed as fast as they come.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from .context import Context, say
from .report import Table, median, percentile, verdict
from .stack import ROOT

RATE = 20_000
KEY_TARGET_MS = 100.0
MEMORY_TARGET_MB = 200.0


async def child(*args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm-256color"}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.tui_child", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                cwd=ROOT, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), 900)
    if proc.returncode != 0:
        raise RuntimeError(f"bench.tui_child {' '.join(args)} exited {proc.returncode}: {err.decode()[-800:]}")
    return json.loads(out.decode().strip().splitlines()[-1])


async def run(ctx: Context) -> list[Table]:
    o = ctx.options
    runs = max(1, min(o.repeats, 3))
    seconds = 2.0 if o.smoke else 8.0
    million = 100_000 if o.smoke else 1_000_000
    floods = []
    for r in range(runs):
        say(f"TUI flood at {RATE:,}/s, {seconds:g}s per case: run {r + 1}/{runs}")
        floods.append(await child("--phase", "flood", "--seconds", str(seconds), "--rate", str(RATE)))
    keys = Table(
        f"TUI ingest at {RATE:,}/s per view while keys switch tabs",
        ["views fed", "fed/s", "ingested/s", "key p50 ms", "key p99 ms", "key max ms", "app CPU %",
         "longest loop stall ms", "longest GC pause ms", "target", "verdict"],
    )
    for case, label in (("messages", "Messages"), ("logs", "Logs"), ("both", "Messages + Logs at once")):
        results = [f[case] for f in floods]
        all_keys = [k for res in results for k in res["key_ms"]]
        ingested = [min(x for x in (res["shown_messages_per_s"], res["shown_lines_per_s"]) if x is not None)
                    for res in results]
        p99 = percentile(all_keys, 99)
        keys.add(label, median(res["fed_per_s"] for res in results), median(ingested), percentile(all_keys, 50), p99,
                 max(all_keys), 100 * median(res["cpu_share"] for res in results),
                 max(res["loop_stall_max_ms"] for res in results), max(res["gc_max_ms"] for res in results),
                 f"{RATE:,}/s, key <= {KEY_TARGET_MS:g} ms",
                 verdict(p99, KEY_TARGET_MS, False) if median(ingested) >= 0.97 * RATE else "MISSED (fell behind)")
        long_gcs = [f"run {r + 1}: gen {g['generation']} {g['ms']:g} ms on {g['thread']} ({g['collected']} collected)"
                    for r, res in enumerate(results) for g in res.get("gc_long", [])]
        fulls = [res.get("gc_full", 0) for res in results]
        keys.note(f"{label}: full collections per run {fulls}; over 100 ms: {'; '.join(long_gcs) or 'none'}")
    keys.note("a key = a Key event handed to the app's driver as a terminal key arrives; answered = its tab is active")
    keys.note("key latencies of all runs together (p99 over about 40 presses per case in full runs)")
    keys.note("longest loop stall: the most a 5 ms sleep overslept (nothing else ran on the app's event loop "
              "meanwhile); "
              "longest GC pause: Python's cyclic garbage collector, which stops the loop too")

    say(f"TUI memory: {million:,} messages and as many log lines, fresh process")
    mem = await child("--phase", "memory", "--million", str(million))
    m = mem["memory"]
    memory = Table(
        f"TUI memory after {million:,} messages (and {million:,} log lines), MB of resident memory",
        ["process", "idle app", "before feeding", "after", "peak", "kept messages / lines", "seconds",
         "target", "verdict"],
    )
    memory.add("bench.tui_child (the app alone)", mem["rss_idle"], m["rss_before"], m["rss_after"], m["rss_peak"],
               f"{m['kept_messages']:,} / {m['kept_lines']:,}", m["seconds"], f"<= {MEMORY_TARGET_MB:g} MB",
               verdict(max(m["rss_after"], m["rss_peak"]), MEMORY_TARGET_MB, False))
    memory.note("whole-process RSS (Python, Textual and the app included); "
                "the verdict uses the larger of after and peak")
    return [keys, memory]
