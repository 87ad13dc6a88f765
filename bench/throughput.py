"""Sustained throughput through the five workers, many requests in flight.

Client processes (`bench.load`) keep N requests in flight through the
sandbox's own `Bus.request`, round-robin over the agents, against the local
stack (one worker process per agent, default WORKER_CONCURRENCY=16). After a
warm-up, every response that arrives inside the measuring window counts.
Tasks = what the workers handled: a coordinator request is 5 tasks (its own
and the 4 it delegates over the bus).

The machine's two cores are shared, so a second table gives what does not
depend on how busy they were: the CPU each part of the stack spent per task,
and from that the rate two otherwise idle cores could sustain.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from sandbox.protocol import AGENTS

from .context import Context, say
from .report import Runs, Table, median, verdict
from .stack import ROOT, child_env, cpu_seconds, pids_of

LEAVES = [a for a in AGENTS if a != "coordinator"]
# mix -> (agents, target tasks/s): issue 15's goals; the coordinator's mix waits on four hops per request
MIXES = {
    "four leaf agents": (LEAVES, 5_000.0),
    "all five (coordinator fans out)": (list(AGENTS), 3_000.0),
}
ROLES = ("clients", "workers", "broker", "supervisord", "api")


async def run_clients(backend: str, address: str, agents: list[str], clients: int, inflight: int,
                      warmup: float, seconds: float, module: tuple[str, ...] = ("bench.load",)) -> dict:
    """Run `clients` load processes (`python -m <module>`) at once; their figures added up."""
    start_at = time.time() + warmup + 1.5  # the clients start (import, connect) within 1.5 s
    procs = []
    env = child_env()
    for _ in range(clients):
        procs.append(await asyncio.create_subprocess_exec(
            sys.executable, "-m", *module, "--backend", backend, "--address", address,
            "--agents", ",".join(agents), "--inflight", str(max(1, inflight // clients)),
            "--start-at", str(start_at), "--seconds", str(seconds),
            stdout=asyncio.subprocess.PIPE, cwd=ROOT, env=env,
        ))
    outs = await asyncio.gather(*(asyncio.wait_for(p.communicate(), warmup + seconds + 180) for p in procs))
    total = {"requests": 0, "tasks": 0, "errors": 0, "latencies": [], "seconds": seconds, "cpu_s": 0.0, "all_tasks": 0}
    for p, (stdout, _) in zip(procs, outs, strict=True):
        if p.returncode != 0:
            raise RuntimeError(f"load client exited {p.returncode}")
        doc = json.loads(stdout.decode().strip().splitlines()[-1])
        for key in ("requests", "tasks", "errors", "cpu_s", "all_tasks"):
            total[key] += doc[key]
        total["latencies"] += doc["latencies"]
    return total


async def run(ctx: Context) -> list[Table]:
    o = ctx.options
    clients = 2
    inflight = o.n(256, 64)
    warmup, seconds = (2.0, 8.0) if not o.smoke else (0.5, 2.0)
    runs = max(1, min(o.repeats, 3))
    table = Table(
        f"Sustained throughput through the five workers ({clients} client processes, {inflight} requests in flight)",
        ["broker / mix", "tasks/s", "requests/s", "tasks/s min..max", "request p50 ms", "request p99 ms",
         "target", "verdict"],
    )
    costs = Table(
        "CPU per task while under that load (ms of CPU; capacity = 2 cores / total)",
        ["broker / mix", *(f"{r}" for r in ROLES), "total", "capacity on 2 idle cores, tasks/s"],
    )
    for backend in o.backends:
        settings = await ctx.local_on(backend)
        address = settings.redis_url if backend == "redis" else settings.kafka_bootstrap
        pids = pids_of(ctx.local)
        for mix, (agents, target) in MIXES.items():
            tasks, reqs, lat = Runs(), Runs(), Runs()
            per_task: dict[str, list[float]] = {r: [] for r in ROLES}
            for r in range(runs):
                say(f"throughput on {backend}, {mix}: run {r + 1}/{runs} ({seconds:g}s)")
                before = {role: cpu_seconds(pids[role]) for role in ROLES if role != "clients"}
                result = await run_clients(backend, address, agents, clients, inflight, warmup, seconds)
                if result["errors"]:
                    raise RuntimeError(f"{result['errors']} request(s) answered with an error")
                done = max(1, result["all_tasks"])
                for role in ROLES:
                    used = result["cpu_s"] if role == "clients" else cpu_seconds(pids[role]) - before[role]
                    per_task[role].append(1000 * used / done)
                tasks.add(result["tasks"] / seconds)
                reqs.add(result["requests"] / seconds)
                lat.add(result["latencies"])
            lo, hi = tasks.spread
            table.add(f"{backend}: {mix}", tasks.p50, reqs.p50, f"{lo:,.0f}..{hi:,.0f}", lat.p50, lat.p99,
                      f">= {target:,.0f} tasks/s", verdict(tasks.p50, target, True))
            cost = {role: median(v) for role, v in per_task.items()}
            total = sum(cost.values())
            costs.add(f"{backend}: {mix}", *(cost[r] for r in ROLES), total, 2000.0 / total if total else None)
    table.note("the local stack as `laddr-sandbox up` starts it; one worker process per agent, "
               "WORKER_CONCURRENCY=16, workers log two lines per task (INFO) through supervisord, "
               "written in batches (sandbox/loglines.py)")
    costs.note("clients include the load generator's own work; the broker's CPU includes its idle background work")
    costs.note("capacity assumes the work spreads over both cores; the measured rate is lower when others use them")
    return [table, costs]
