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

The ceiling runs in two layouts in every run. The verdict uses the sandbox's
own: its topics' partition count (KAFKA_PARTITIONS, 6) and at most its
WORKER_CONCURRENCY (16) tasks per read. The second, one partition and 64 per
read, is the fastest a bare loop goes here: on Kafka about 2.5x the first
(every fetch, produce and commit covers one partition, not six, and a batch
four times the size; 7 Dec), which is broker work the sandbox's layout asks
for, not sandbox code. Both are printed.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from dataclasses import dataclass

from .context import Context, say
from .report import Runs, Table, median, verdict
from .stack import ROOT, child_env, cpu_seconds, pids_of
from .throughput import LEAVES, run_clients

BARE = ("bench.bare", "load")
RT_TARGET = 1.2  # sandbox round trip p50 <= 1.2x the ceiling's
TP_TARGET = 0.7  # sandbox throughput >= 0.7 of the ceiling's


@dataclass(frozen=True)
class Layout:
    """How the bare loop's topics and reads are shaped; each layout has topics of its own."""

    partitions: int  # per Kafka topic
    batch: int  # the most tasks an echo server takes per read

    @property
    def name(self) -> str:
        return f"bench-bare-p{self.partitions}-b{self.batch}"

    @property
    def queues(self) -> list[str]:
        return [f"{self.name}-{i}" for i in range(len(LEAVES))]

    @property
    def answers(self) -> str:
        return f"{self.name}-answers"

    def label(self, backend: str) -> str:
        per_read = f"<= {self.batch} per read"
        return f"{self.partitions} partition(s), {per_read}" if backend == "kafka" else per_read


FASTEST = Layout(1, 64)  # the fastest a bare loop goes here, printed beside the verdict's ceiling


class EchoServers:
    """Bare echo processes (`bench.bare serve`), one per queue; `setup` lays out their topics first."""

    def __init__(self, backend: str, address: str, queues: list[str], serve_args: list[str],
                 setup_args: list[str] | None = None):
        self.backend, self.address, self.queues = backend, address, queues
        self.serve_args, self.setup_args = serve_args, setup_args
        self.procs: list[subprocess.Popen[bytes]] = []

    @classmethod
    def in_layout(cls, backend: str, address: str, layout: Layout) -> EchoServers:
        """The ceiling's: on the layout's own queues, topics and answers' topic."""
        return cls(backend, address, layout.queues, ["--answers", layout.answers, "--batch", str(layout.batch)],
                   ["--answers", layout.answers, "--queues", ",".join(layout.queues),
                    "--partitions", str(layout.partitions)])

    def __enter__(self) -> EchoServers:
        base = [sys.executable, "-m", "bench.bare"]
        where = ["--backend", self.backend, "--address", self.address]
        if self.setup_args is not None:
            subprocess.run([*base, "setup", *where, *self.setup_args],
                           cwd=ROOT, env=child_env(), check=True, timeout=60, stdin=subprocess.DEVNULL)
        for q in self.queues:
            self.procs.append(subprocess.Popen([*base, "serve", *where, "--queue", q, *self.serve_args],
                                               cwd=ROOT, env=child_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE))
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
        ["broker / figure", "sandbox", "ceiling", "sandbox / ceiling", "target", "verdict",
         f"bare fastest ({FASTEST.label('kafka')})", "sandbox / fastest"],
    )
    costs = Table(
        "CPU per task, sandbox vs ceiling (ms of CPU over every process, same fixed load)",
        ["broker / loop", "clients", "workers", "broker", "supervisord + api", "total", "tasks/s"],
    )
    for backend in o.backends:
        settings = await ctx.local_on(backend)
        address = settings.redis_url if backend == "redis" else settings.kafka_bootstrap
        # The sandbox's own layout (the verdict's ceiling), then the fastest a bare loop goes.
        layouts = {"ceiling": Layout(settings.kafka_partitions, settings.worker_concurrency), "best": FASTEST}
        stack = pids_of(ctx.local)
        roles = {"workers": stack["workers"], "broker": stack["broker"], "other": stack["supervisord"] + stack["api"]}
        found: dict[str, tuple[Runs, Runs, dict[str, list[float]]]] = {
            loop: (Runs(), Runs(), {}) for loop in ("sandbox", *layouts)}
        # A broker just started (Kafka's JVM compiling its hot paths) would charge its warm-up to
        # the first loop measured: load it, unmeasured, first.
        say(f"ceiling on {backend}: warming the broker up (unmeasured)")
        await run_clients(backend, address, LEAVES, 2, 256, 0.5, 1.0 if o.smoke else 4.0)
        for r in range(runs):
            say(f"ceiling on {backend}: run {r + 1}/{runs}, sandbox then bare clients in two layouts")
            for loop in found:
                rts, tps, cpus = found[loop]
                if loop == "sandbox":
                    got = await measure(backend, address, LEAVES, ("bench.load",), roles, warmup, seconds)
                else:
                    layout = layouts[loop]
                    with EchoServers.in_layout(backend, address, layout) as echo:
                        await asyncio.wait_for(asyncio.to_thread(echo.wait_ready), 120)
                        bare_roles = {"workers": echo.pids(), "broker": stack["broker"]}
                        got = await measure(backend, address, layout.queues, (*BARE, "--answers", layout.answers),
                                            bare_roles, warmup, seconds)
                say(f"  {loop}: {got[1]:,.0f} tasks/s, CPU ms per task "
                    + ", ".join(f"{role} {ms:.3f}" for role, ms in got[2].items()))
                rts.add(got[0])
                tps.add(got[1])
                for role, ms in got[2].items():
                    cpus.setdefault(role, []).append(ms)
        (s_rt, s_tp, _), (c_rt, c_tp, _), (b_rt, b_tp, _) = found["sandbox"], found["ceiling"], found["best"]
        rt_ratio = _ratio(s_rt.p50, c_rt.p50)
        tp_ratio = _ratio(s_tp.p50, c_tp.p50)
        table.add(f"{backend}: round trip p50 ms", s_rt.p50, c_rt.p50, f"{rt_ratio:.2f}x", f"<= {RT_TARGET}x",
                  verdict(rt_ratio, RT_TARGET, False), b_rt.p50, f"{_ratio(s_rt.p50, b_rt.p50):.2f}x")
        table.add(f"{backend}: round trip p99 ms", s_rt.p99, c_rt.p99, f"{_ratio(s_rt.p99, c_rt.p99):.2f}x", "", "",
                  b_rt.p99, f"{_ratio(s_rt.p99, b_rt.p99):.2f}x")
        table.add(f"{backend}: throughput tasks/s", s_tp.p50, c_tp.p50, f"{tp_ratio:.2f}x", f">= {TP_TARGET}x",
                  verdict(tp_ratio, TP_TARGET, True), b_tp.p50, f"{_ratio(s_tp.p50, b_tp.p50):.2f}x")
        for loop, (_, tps, cpus) in found.items():
            cost = {role: median(v) for role, v in cpus.items()}
            name = loop if loop == "sandbox" else f"ceiling, {layouts[loop].label(backend)}"
            costs.add(f"{backend}: {name}", cost["clients"], cost["workers"], cost["broker"],
                      cost.get("other", 0.0), sum(cost.values()), tps.p50)
    table.note("sandbox: `Bus.request` through the local stack to the four leaf agents (one worker each); "
               "ceiling: `python -m bench.bare`, four echo processes, one per queue")
    table.note("ceiling: the sandbox's layout (Kafka topics of KAFKA_PARTITIONS partitions, at most "
               "WORKER_CONCURRENCY tasks per read); the last two columns: the bare loop's fastest layout")
    table.note("round trip: one request at a time; throughput: 2 client processes, 256 in flight; the three "
               "loops alternate in each run, medians over runs")
    costs.note("the broker's CPU includes its idle background work; the ceiling has no supervisord or api")
    return [table, costs]


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")
