"""The sandbox against a bare-client ceiling, in the same run on the same broker.

The ceiling is `bench.bare`: four echo processes (one per queue, as the local
stack runs one worker per leaf agent) and the same load shape (2 client
processes, 256 in flight, round-robin over the four queues; one at a time for
the round trip), with the same client libraries and the same broker
operations per task, and no sandbox code. The sandbox's figures come from the
local stack right before: `Bus.request` to the four leaf agents. CPU per task
is user+system of every process involved (clients, workers or echo servers,
the broker; for the sandbox also supervisord and the api) from /proc and
getrusage, over the same fixed window.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from .context import Context, say
from .report import Runs, Table, median, verdict
from .stack import ROOT, cpu_seconds, pids_of
from .throughput import LEAVES, run_clients

QUEUES = [f"bench-bare-{i}" for i in range(len(LEAVES))]
BARE = ("bench.bare", "load")
RT_TARGET = 1.2  # sandbox round trip p50 <= 1.2x the ceiling's
TP_TARGET = 0.7  # sandbox throughput >= 0.7 of the ceiling's


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}


class EchoServers:
    """The bare echo processes, one per queue."""

    def __init__(self, backend: str, address: str):
        self.backend, self.address = backend, address
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> EchoServers:
        base = [sys.executable, "-m", "bench.bare"]
        args = ["--backend", self.backend, "--address", self.address]
        subprocess.run([*base, "setup", *args, "--queues", str(len(QUEUES))], cwd=ROOT, env=_env(), check=True,
                       timeout=60, stdin=subprocess.DEVNULL)
        for q in QUEUES:
            self.procs.append(subprocess.Popen([*base, "serve", *args, "--queue", q], cwd=ROOT, env=_env(),
                                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE))
        return self

    def wait_ready(self) -> None:
        """Each echo server says `ready` once it answers (on Kafka: joined its group)."""
        for p in self.procs:
            assert p.stdout is not None
            if p.stdout.readline().strip() != b"ready":
                raise RuntimeError(f"bench.bare serve exited ({p.poll()}) before it was ready")

    def __exit__(self, *_: object) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]


async def measure(backend: str, address: str, agents: list[str], module: tuple[str, ...],
                  roles: dict[str, list[int]], warmup: float, seconds: float) -> tuple[list[float], float, dict]:
    """Round trip latencies (one at a time), then tasks/s and CPU ms per task by role (many in flight)."""
    rt = await run_clients(backend, address, agents[:1], 1, 1, warmup, seconds / 2, module)
    before = {role: cpu_seconds(p) for role, p in roles.items()}
    tp = await run_clients(backend, address, agents, 2, 256, warmup, seconds, module)
    done = max(1, tp["all_tasks"])
    cpu = {role: 1000 * (cpu_seconds(p) - before[role]) / done for role, p in roles.items()}
    cpu["clients"] = 1000 * tp["cpu_s"] / done
    return rt["latencies"], tp["tasks"] / seconds, cpu


async def run(ctx: Context) -> list[Table]:
    o = ctx.options
    warmup, seconds = (0.5, 3.0) if o.smoke else (2.0, 8.0)
    runs = max(1, min(o.repeats, 3))
    table = Table(
        "Sandbox vs a bare-client ceiling (same broker, same operations per task, no sandbox code)",
        ["broker / figure", "sandbox", "ceiling", "sandbox / ceiling", "target", "verdict"],
    )
    costs = Table(
        "CPU per task, sandbox vs ceiling (ms of CPU over every process, same fixed load)",
        ["broker / loop", "clients", "workers", "broker", "supervisord + api", "total", "tasks/s"],
    )
    for backend in o.backends:
        settings = await ctx.local_on(backend)
        address = settings.redis_url if backend == "redis" else settings.kafka_bootstrap
        stack = pids_of(ctx.local)
        roles = {"workers": stack["workers"], "broker": stack["broker"], "other": stack["supervisord"] + stack["api"]}
        found: dict[str, tuple[Runs, Runs, dict[str, list[float]]]] = {
            loop: (Runs(), Runs(), {}) for loop in ("sandbox", "ceiling")}
        # A broker just started (Kafka's JVM compiling its hot paths) would charge its warm-up to
        # the first loop measured: load it, unmeasured, first.
        say(f"ceiling on {backend}: warming the broker up (unmeasured)")
        await run_clients(backend, address, LEAVES, 2, 256, 0.5, 1.0 if o.smoke else 4.0)
        for r in range(runs):
            say(f"ceiling on {backend}: run {r + 1}/{runs}, sandbox then bare clients")
            for loop in ("sandbox", "ceiling"):
                rts, tps, cpus = found[loop]
                if loop == "sandbox":
                    got = await measure(backend, address, LEAVES, ("bench.load",), roles, warmup, seconds)
                else:
                    with EchoServers(backend, address) as echo:
                        await asyncio.wait_for(asyncio.to_thread(echo.wait_ready), 120)
                        bare_roles = {"workers": echo.pids(), "broker": stack["broker"]}
                        got = await measure(backend, address, QUEUES, BARE, bare_roles, warmup, seconds)
                say(f"  {loop}: {got[1]:,.0f} tasks/s, CPU ms per task "
                    + ", ".join(f"{role} {ms:.3f}" for role, ms in got[2].items()))
                rts.add(got[0])
                tps.add(got[1])
                for role, ms in got[2].items():
                    cpus.setdefault(role, []).append(ms)
        (s_rt, s_tp, s_cpu), (c_rt, c_tp, c_cpu) = found["sandbox"], found["ceiling"]
        rt_ratio = s_rt.p50 / c_rt.p50 if c_rt.p50 else float("nan")
        tp_ratio = s_tp.p50 / c_tp.p50 if c_tp.p50 else float("nan")
        table.add(f"{backend}: round trip p50 ms", s_rt.p50, c_rt.p50, f"{rt_ratio:.2f}x", f"<= {RT_TARGET}x",
                  verdict(rt_ratio, RT_TARGET, False))
        table.add(f"{backend}: round trip p99 ms", s_rt.p99, c_rt.p99, f"{s_rt.p99 / c_rt.p99:.2f}x", "", "")
        table.add(f"{backend}: throughput tasks/s", s_tp.p50, c_tp.p50, f"{tp_ratio:.2f}x", f">= {TP_TARGET}x",
                  verdict(tp_ratio, TP_TARGET, True))
        for loop, cpus, tps in (("sandbox", s_cpu, s_tp), ("ceiling", c_cpu, c_tp)):
            cost = {role: median(v) for role, v in cpus.items()}
            costs.add(f"{backend}: {loop}", cost["clients"], cost["workers"], cost["broker"],
                      cost.get("other", 0.0), sum(cost.values()), tps.p50)
    table.note("sandbox: `Bus.request` through the local stack to the four leaf agents (one worker each); "
               "ceiling: `python -m bench.bare`, four echo processes, one per queue")
    table.note("round trip: one request at a time; throughput: 2 client processes, 256 in flight; both "
               "loops alternate in each run, medians over runs")
    costs.note("the broker's CPU includes its idle background work; the ceiling has no supervisord or api")
    return [table, costs]
