"""Cold `up` of the local stack, and the backend switch, timed end to end.

Cold up: `LocalRuntime.up(backend)` — what `laddr-sandbox up` runs — from
nothing running until the api answers and every worker has registered (it
returns only then). Twice per run: in a fresh project folder (Kafka formats
its storage), and again after `down` in the same folder (data kept).

Switch: `switch_backend(runtime, target, keep_old=True)` — the TUI's `b` key
and `laddr-sandbox switch` — until a request on the new broker is answered.
The first switch to Kafka starts its JVM (cold); later switches find the
other broker kept warm.
"""

from __future__ import annotations

import time
from pathlib import Path

from sandbox.bus import make_bus
from sandbox.switch import switch_backend

from .context import Context, say
from .report import Runs, Table, verdict
from .stack import finish_local, make_local

TARGET_UP = {"redis": 3.0, "kafka": 15.0}
TARGET_SWITCH = 5.0


async def timed_switch(runtime, target: str, keep_old: bool) -> tuple[float, list[tuple[float, str]], float, float]:
    """switch_backend, then one answered request: (start, progress lines with their times, switched, answered)."""
    marks: list[tuple[float, str]] = []
    t0 = time.perf_counter()
    await switch_backend(runtime, target, keep_old=keep_old, force=True,
                         progress=lambda line: marks.append((time.perf_counter(), line)))
    switched = time.perf_counter()
    await answered(runtime, target)
    return t0, marks, switched, time.perf_counter()


async def answered(runtime, backend: str, timeout: float = 60.0) -> None:
    async with make_bus(runtime.bus_settings(backend), backend) as bus:
        response = await bus.request("researcher", {"query": "are you there"}, timeout=timeout)
        if not response.ok:
            raise RuntimeError(f"{backend}: {response.error}")


async def cold_up(ctx: Context, backend: str, root: Path) -> tuple[float, float]:
    runtime = make_local(root)
    try:
        t0 = time.perf_counter()
        await runtime.up(backend)
        fresh = time.perf_counter() - t0
        await answered(runtime, backend)
        await runtime.down()
        t0 = time.perf_counter()
        await runtime.up(backend)
        again = time.perf_counter() - t0
        await answered(runtime, backend)
        return fresh, again
    finally:
        await finish_local(runtime)


async def switches(ctx: Context, root: Path, warm_rounds: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Seconds per switch, and per switch the phases: target broker up, apps stopped, apps up, answered."""
    runtime = make_local(root)
    times: dict[str, list[float]] = {}
    phases: dict[str, list[float]] = {}

    async def one(target: str, label: str) -> None:
        t0, marks, switched, done = await timed_switch(runtime, target, keep_old=True)
        times.setdefault(label, []).append(done - t0)
        stopping = next((t for t, line in marks if line.startswith("stopping the api")), t0)
        starting = next((t for t, line in marks if line.startswith("starting the api")), stopping)
        phases[label] = [stopping - t0, starting - stopping, switched - starting, done - switched]

    try:
        await runtime.up("redis")
        await answered(runtime, "redis")
        say("switch redis -> kafka (Kafka not running yet)")
        await one("kafka", "redis -> kafka, Kafka started by the switch (cold JVM)")
        for r in range(warm_rounds):
            say(f"switch kafka -> redis -> kafka, the other broker kept warm ({r + 1}/{warm_rounds})")
            await one("redis", "kafka -> redis, Redis kept warm")
            await one("kafka", "redis -> kafka, Kafka kept warm")
        return times, phases
    finally:
        await finish_local(runtime)


async def run(ctx: Context) -> list[Table]:
    o = ctx.options
    runs = max(1, min(o.repeats, 3))
    up = Table(
        "Cold `up` of the local stack until every worker is registered (and the api answers), seconds",
        ["broker / folder", "runs", "median", "max", "min..max", "target", "verdict"],
    )
    for backend in o.backends:
        fresh, again = Runs(), Runs()
        for r in range(runs):
            say(f"cold up on {backend}: run {r + 1}/{runs}")
            root = ctx.root / f"up-{backend}-{r}"
            a, b = await cold_up(ctx, backend, root)
            fresh.add(a)
            again.add(b)
        for label, figure in (("fresh project folder", fresh), ("after `down`, folder kept", again)):
            values = [v[0] for v in figure.samples]
            up.add(f"{backend}: {label}", len(values), figure.p50, max(values), f"{min(values):.1f}..{max(values):.1f}",
                   f"<= {TARGET_UP[backend]:g}", verdict(figure.p50, TARGET_UP[backend], False))
    up.note("LocalRuntime.up(): supervisord, the broker, topology, the api and one worker per agent; "
            "it returns when supervisord says all run and each worker's registry entry is from this start")

    switch = Table(
        "Backend switch: stack on one broker -> a request answered on the other, seconds",
        ["switch", "runs", "median", "max", "target broker up", "apps stopped", "apps up + registered",
         "first answer", "target", "verdict"],
    )
    if len(o.backends) == 2:
        times, phases = await switches(ctx, ctx.root / "switch", warm_rounds=o.n(3, 1))
        for label, values in times.items():
            med = sorted(values)[len(values) // 2]
            a, b, c, d = phases[label]
            switch.add(label, len(values), med, max(values), a, b, c, d,
                       f"<= {TARGET_SWITCH:g}", verdict(med, TARGET_SWITCH, False))
        switch.note("switch_backend(keep_old=True): start the target broker (if not running), stop the api and "
                    "workers, write .env, start them on the target and wait until all registered; then one request")
        switch.note("the four phase columns are the last switch of that kind (they add up to its total)")
    return [up, switch] if len(o.backends) == 2 else [up]
