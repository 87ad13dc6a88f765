"""Cold `up` and the backend switch on the Compose runtime, timed end to end (`--only compose`).

The same two figures as bench/stack_times.py, on the Docker engine with the images already here
(scripts/setup-docker.sh built them; nothing is pulled or built while timed):

- cold up: `ComposeRuntime.up(backend)` in a folder with no container yet (its own Compose
  project), until it returns (every service running and healthy), then one request answered;
- switch: `switch_backend(runtime, target)` — `laddr-sandbox switch` and the TUI's `b` — from the
  stack on one broker until a request is answered on the other.

Each is split into phases by the runtime's own progress lines (and Compose's), so a miss says
where the time went. Needs Docker: only run when named (`--only compose`), never in --smoke.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

from sandbox.brokers.ports import free_ports
from sandbox.config import Settings, write_env

from .context import Context, say
from .report import Runs, Table, verdict
from .stack_times import answered, timed_switch

TARGET_UP = {"kafka": 20.0, "redis": 10.0}
TARGET_SWITCH = 10.0
Marks = list[tuple[float, str]]


def make_compose(root: Path):  # -> ComposeRuntime
    """A compose runtime for a fresh sandbox folder: its own project, free host ports, local images."""
    from sandbox.runtime.compose import ComposeRuntime
    from sandbox.runtime.compose.images import COMPOSE_DIR, ensure_images

    images = ensure_images(log=lambda _: None)  # cached: seconds when setup-docker.sh built them
    root.mkdir(parents=True, exist_ok=True)
    env = root / "compose.env"
    shutil.copyfile(COMPOSE_DIR / ".env.example", env)
    api, kafka, redis = free_ports(3)
    write_env(env, {**images, "COMPOSE_PROFILES": "", "API_HOST_PORT": str(api), "KAFKA_HOST_PORT": str(kafka),
                    "REDIS_HOST_PORT": str(redis)})
    return ComposeRuntime(Settings(env_file=root / ".env"), env_file=env, cwd=root)


def first(marks: Marks, *needles: str, default: float) -> float:
    """When the first progress line holding every needle was said."""
    return next((t for t, line in marks if all(n in line for n in needles)), default)


def up_phases(marks: Marks, t0: float, returned: float, backend: str) -> list[float]:
    """checks (images, ports) · broker started until healthy · the rest of `compose up` (topics, apps
    created and started) · waiting for the apps' healthchecks — seconds each, adding up to the total."""
    broker = "kafka" if backend == "kafka" else "redis"
    starting = first(marks, "starting the", default=t0)
    healthy = max(starting, first(marks, f"-{broker}-1 Healthy", default=starting))
    waiting = max(healthy, first(marks, "waiting for", default=returned))
    return [starting - t0, healthy - starting, waiting - healthy, returned - waiting]


def switch_phases(marks: Marks, t0: float, switched: float) -> list[float]:
    """target broker up · apps stopped · apps up and ready · old broker stopped (switch_backend's steps)."""
    stopping = first(marks, "stopping the api", default=t0)
    starting = max(stopping, first(marks, "starting the api", default=stopping))
    old = max(starting, first(marks, "stopping the", "broker", default=switched))
    return [stopping - t0, starting - stopping, old - starting, switched - old]


async def cold_up(runtime, backend: str) -> tuple[float, list[float]]:
    marks: Marks = []
    t0 = time.perf_counter()
    await runtime.up(backend, lambda line: marks.append((time.perf_counter(), line)))
    returned = time.perf_counter()
    await answered(runtime, backend)
    done = time.perf_counter()
    return done - t0, [*up_phases(marks, t0, returned, backend), done - returned]


# (target, keep_old, label): as `laddr-sandbox switch` does by default, then with --keep-old
SWITCHES = (("redis", False, "kafka -> redis (Kafka stopped)"),
            ("kafka", False, "redis -> kafka (Kafka started by the switch)"),
            ("redis", True, "kafka -> redis, --keep-old"),
            ("kafka", True, "redis -> kafka, Kafka kept warm"))


async def switch(runtime, target: str, keep_old: bool) -> tuple[float, list[float]]:
    t0, marks, switched, done = await timed_switch(runtime, target, keep_old)
    return done - t0, [*switch_phases(marks, t0, switched), done - switched]


async def run(ctx: Context) -> list[Table]:
    o = ctx.options
    runs = max(1, min(o.repeats, 3))
    up = Table("Compose: cold `up` (images here) until every service is healthy and a request answered, seconds",
               ["broker", "runs", "median", "max", "checks", "broker healthy", "topics + apps started",
                "apps healthy", "first answer", "target", "verdict"])
    switches = Table("Compose: backend switch until a request is answered on the other broker, seconds",
                     ["switch", "runs", "median", "max", "target broker up", "apps stopped", "apps up + ready",
                      "old broker stopped", "first answer", "target", "verdict"])
    up_times: dict[str, Runs] = {b: Runs() for b in o.backends}
    up_last: dict[str, list[float]] = {}
    sw_times: dict[str, Runs] = {}
    sw_last: dict[str, list[float]] = {}
    for r in range(runs):
        for backend in o.backends:
            runtime = make_compose(ctx.root / f"compose-{backend}-{r}")
            try:
                say(f"compose: cold up on {backend}, run {r + 1}/{runs}")
                total, up_last[backend] = await cold_up(runtime, backend)
                up_times[backend].add(total)
                if len(o.backends) == 2 and backend == "kafka":  # then back and forth from there
                    for target, keep_old, label in SWITCHES:
                        say(f"compose: switch {label}, run {r + 1}/{runs}")
                        total, sw_last[label] = await switch(runtime, target, keep_old)
                        sw_times.setdefault(label, Runs()).add(total)
            finally:
                await asyncio.wait_for(runtime.down(), 180)
    for backend, figure in up_times.items():
        values = [v[0] for v in figure.samples]
        up.add(backend, len(values), figure.p50, max(values), *up_last[backend],
               f"<= {TARGET_UP[backend]:g}", verdict(figure.p50, TARGET_UP[backend], False))
    up.note("ComposeRuntime.up(): image and port checks, `docker compose up -d` (it waits for the broker's "
            "healthcheck before it starts the apps), then every container running and ready (healthy, or the "
            "app said so); the phase columns are the last run's (they add up to its total)")
    for label, figure in sw_times.items():
        values = [v[0] for v in figure.samples]
        switches.add(label, len(values), figure.p50, max(values), *sw_last[label],
                     f"<= {TARGET_SWITCH:g}", verdict(figure.p50, TARGET_SWITCH, False))
    switches.note("switch_backend(force=True) on the Compose runtime: start the target broker, stop the api and "
                  "workers, start them on the target and wait until ready, stop the old broker (not with --keep-old); "
                  "then one request. The phase columns are the last run's; stopping the old broker is in the total")
    return [up, switches] if sw_times else [up]
