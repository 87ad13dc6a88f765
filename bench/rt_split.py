"""The round trip split by side: the sandbox's client and worker crossed with bare ones.

The sandbox's round trip is 1.4-1.8x the bare loop's (bench/ceiling.py); this says which side
the difference is on. One request at a time to `researcher` on the local stack, in four pairs:

- client: the sandbox's (`bench.load`, `Bus.request`) or bare (`bench.bare load`: XADD and a
  pattern subscription on Redis, produce and a consumer of laddr.responses on Kafka);
- worker: the stack's own `researcher_worker` (supervisord, its log lines) or a bare echo
  (`bench.bare serve`) in the researcher's consumer group, with the stack's worker scaled to 0
  meanwhile (so that each task has one answer).

Both bare sides speak the sandbox's wire format (its stream or topic, group, answer key and
topic), so every pair talks. Each run measures the four pairs back to back.
"""

from __future__ import annotations

import asyncio

from sandbox.protocol import KAFKA_RESPONSES, REDIS_RESPONSE_PREFIX, kafka_group, kafka_topic, redis_group, redis_stream

from .ceiling import EchoServers
from .context import Context, say
from .report import Runs, Table
from .throughput import run_clients

AGENT = "researcher"
SERVICE = f"{AGENT}_worker"


def wire_args(backend: str) -> list[str]:
    """bench.bare's names for the sandbox's own: its answers' topic and key prefix, and the agent's group."""
    group = redis_group(AGENT) if backend == "redis" else kafka_group(AGENT)
    return ["--answers", KAFKA_RESPONSES, "--answer-prefix", REDIS_RESPONSE_PREFIX, "--group", group]


def queue_of(backend: str) -> str:
    return redis_stream(AGENT) if backend == "redis" else kafka_topic(AGENT)


async def one_at_a_time(backend: str, address: str, client: str, warmup: float, seconds: float) -> list[float]:
    if client == "sandbox":
        got = await run_clients(backend, address, [AGENT], 1, 1, warmup, seconds)
    else:
        got = await run_clients(backend, address, [queue_of(backend)], 1, 1, warmup, seconds,
                                ("bench.bare", "load", *wire_args(backend)))
    return got["latencies"]


async def run(ctx: Context) -> list[Table]:
    o = ctx.options
    warmup, seconds = (0.3, 1.0) if o.smoke else (1.0, 4.0)
    runs = max(1, min(o.repeats, 3))
    table = Table("Round trip split by side: sandbox and bare clients x workers (one request at a time, ms)",
                  ["broker / client x worker", "requests", "p50", "p99", "p50 min..max of runs", "p50 / bare x bare"])
    for backend in o.backends:
        settings = await ctx.local_on(backend)
        address = settings.redis_url if backend == "redis" else settings.kafka_bootstrap
        found: dict[tuple[str, str], Runs] = {(c, w): Runs() for w in ("sandbox", "bare") for c in ("sandbox", "bare")}
        say(f"round trip split on {backend}: warming the broker up (unmeasured)")  # a fresh JVM's JIT
        await one_at_a_time(backend, address, "sandbox", warmup, 1.0 if o.smoke else 3.0)
        bare_worker = ["--batch", "16", *wire_args(backend)]  # the researcher's queue, in its own group
        for r in range(runs):
            say(f"round trip split on {backend}: run {r + 1}/{runs}")
            for client in ("sandbox", "bare"):
                found[client, "sandbox"].add(await one_at_a_time(backend, address, client, warmup, seconds))
            await ctx.local.scale(SERVICE, 0)  # the bare echo alone in the group: one answer per task
            try:
                with EchoServers(backend, address, [queue_of(backend)], bare_worker) as echo:
                    await asyncio.wait_for(asyncio.to_thread(echo.wait_ready), 120)
                    for client in ("sandbox", "bare"):
                        found[client, "bare"].add(await one_at_a_time(backend, address, client, warmup, seconds))
            finally:
                await ctx.local.scale(SERVICE, 1)  # back, as the next run and later benchmarks expect it
        base = found["bare", "bare"].p50
        for (client, worker), runs_ in found.items():
            low, high = runs_.spread
            table.add(f"{backend}: {client} client x {worker} worker", runs_.count, runs_.p50, runs_.p99,
                      f"{low:.3f}..{high:.3f}", f"{runs_.p50 / base:.2f}x" if base else "—")
    table.note("the local stack; the bare worker answers in the researcher's own group while the stack's worker is "
               "scaled to 0; every pair speaks the sandbox's wire format")
    table.note("sandbox x sandbox minus bare x bare is what the sandbox adds; each side's share is its row against "
               "bare x bare")
    return [table]
