"""`python -m bench`: every benchmark against real brokers, printed as tables.

    python -m bench                       # all of them (about half an hour on 2 cores)
    python -m bench --smoke               # a short version for CI (a few minutes)
    python -m bench --only roundtrip,tap  # some of them
    python -m bench --only compose        # the Compose runtime's up and switch (needs Docker; never by default)
    python -m bench --list
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys
import time
import traceback

from .context import Context, Options, say
from .machine import describe, loadavg
from .report import Table, dump_json, print_table
from .stack import scrub_env

# name -> (module, what it measures); run in this order
BENCHMARKS: dict[str, tuple[str, str]] = {
    "roundtrip": ("bench.roundtrip", "request round trip p50/p99, sandbox vs Laddr 0.9.6's client"),
    "throughput": ("bench.throughput", "tasks/s through the five workers, many requests in flight"),
    "ceiling": ("bench.ceiling", "sandbox vs a bare-client request/answer loop: round trip, tasks/s, CPU per task"),
    "split": ("bench.rt_split", "the round trip split by side: sandbox and bare clients crossed with workers"),
    "tap": ("bench.tap", "live tap (watch) messages/s following the broker"),
    "stack": ("bench.stack_times", "cold `up` until every worker registered; backend switch"),
    "tui": ("bench.tui", "TUI Messages/Logs ingest at 20,000/s: key latency, memory after 1,000,000"),
    "compose": ("bench.compose_times", "Compose runtime: cold `up` (images here) and backend switch"),
}
OPT_IN = {"compose"}  # needs a Docker engine and the local images: run only when named (--only compose)


def parse(argv: list[str] | None) -> tuple[Options, argparse.Namespace]:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="short runs (CI): every table, few samples")
    p.add_argument("--only", default="", help=f"comma-separated: {', '.join(BENCHMARKS)}")
    p.add_argument("--backends", default="redis,kafka", help="comma-separated: redis,kafka")
    p.add_argument("--repeats", type=int, default=None, help="runs per figure (default 5; smoke 1)")
    p.add_argument("--json", metavar="FILE", help="also write the tables as JSON")
    p.add_argument("--markdown", metavar="FILE", help="also write the tables as Markdown (for the README)")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    p.add_argument("-v", "--verbose", action="store_true", help="log the sandbox's own messages too")
    args = p.parse_args(argv)
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = [x for x in only if x not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    backends = [x.strip() for x in args.backends.split(",") if x.strip()]
    if not backends or any(b not in ("redis", "kafka") for b in backends):
        p.error("--backends takes redis, kafka or both")
    repeats = args.repeats if args.repeats is not None else (1 if args.smoke else 5)
    return Options(smoke=args.smoke, repeats=max(1, repeats), only=only or [b for b in BENCHMARKS if b not in OPT_IN],
                   backends=backends), args


async def run_all(options: Options) -> tuple[list[Table], list[str]]:
    # SIGTERM cancels the run like Ctrl-C does: the stacks and brokers are stopped on the way out
    main = asyncio.current_task()
    assert main is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    ctx = Context(options)
    tables: list[Table] = []
    failed: list[str] = []
    try:
        for name in options.only:
            module, what = BENCHMARKS[name]
            say(f"{name}: {what}")
            started = time.monotonic()
            try:
                found = await importlib.import_module(module).run(ctx)
            except Exception:  # one broken benchmark must not hide the others' tables
                traceback.print_exc()
                failed.append(name)
                continue
            for table in found:
                print_table(table)
                tables.append(table)
            say(f"{name} done in {time.monotonic() - started:.0f}s (load average {loadavg()})")
    finally:
        await ctx.close()
    return tables, failed


def main(argv: list[str] | None = None) -> int:
    options, args = parse(argv)
    if args.list:
        for name, (_, what) in BENCHMARKS.items():
            print(f"{name:12} {what}")
        return 0
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    scrub_env()

    machine = describe()
    mode = "smoke" if options.smoke else "full"
    print(f"laddr-sandbox benchmarks ({mode}, {options.repeats} run(s) per figure)")
    print(f"machine: {machine}", flush=True)
    started = time.monotonic()
    try:
        tables, failed = asyncio.run(run_all(options))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: every stack and broker of this run was stopped", file=sys.stderr)
        return 130
    print(f"\nall done in {time.monotonic() - started:.0f}s; load average at the end {loadavg()}")
    if args.json:
        dump_json(tables, args.json)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(f"Machine: {machine}\n\n" + "\n\n".join(t.markdown() for t in tables) + "\n")
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
