"""Request round trip: send a task, get its response — the sandbox's client vs Laddr 0.9.6's.

One request at a time to the `researcher` worker. In each run the two clients
alternate request by request on the same broker and the same workers, so a
noisy moment on the shared cores hits both; the ratio is taken per run.

Laddr's Kafka client pays a consumer-group join and a scan of
`laddr.responses` from the beginning for every request, so it is measured
twice more on throwaway brokers with a fresh responses topic: with the
sandbox's `group.initial.rebalance.delay.ms=0` and with Kafka's default
3000, after 0, 1,000 and 10,000 earlier responses.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sandbox.bus import Bus, make_bus
from sandbox.config import Settings
from sandbox.protocol import KAFKA_RESPONSES

from . import laddr096
from .context import Context, say
from .report import Runs, Table, median, verdict

AGENT = "researcher"
PAYLOAD = {"query": "round trip benchmark"}
TARGET_MS = {"redis": 2.0, "kafka": 10.0}


async def sandbox_once(bus: Bus) -> float:
    t0 = time.perf_counter()
    response = await bus.request(AGENT, PAYLOAD, timeout=30)
    ms = (time.perf_counter() - t0) * 1000
    if not response.ok:
        raise RuntimeError(f"sandbox request failed: {response.error}")
    return ms


async def laddr_once(lbus: Any, timeout: float = 60) -> float:
    t0 = time.perf_counter()
    task_id = await lbus.publish_task(AGENT, dict(PAYLOAD))
    doc = await lbus.wait_for_response(task_id, timeout)
    ms = (time.perf_counter() - t0) * 1000
    if not doc or doc.get("status") != "success":
        raise RuntimeError(f"Laddr request {task_id} got {doc!r}")
    return ms


def laddr_bus(settings: Settings) -> Any:
    mod = laddr096.load()
    if settings.queue_backend == "redis":
        return mod.RedisBus(settings.redis_url)
    return mod.KafkaBus(settings.kafka_bootstrap)


async def close_laddr(lbus: Any) -> None:
    client = getattr(lbus, "_client", None)
    if client is not None:
        await client.aclose()
    producer = getattr(lbus, "_producer", None)
    if producer is not None:
        await producer.stop()


async def paired_runs(settings: Settings, runs: int, sandbox_n: int, laddr_n: int,
                      laddr_first: bool = False) -> tuple[Runs, Runs, list[float]]:
    """`runs` runs; in each, laddr_n Laddr requests interleaved among sandbox_n sandbox ones.

    laddr_first: Laddr's requests of a run go first (they see the responses topic as it was).
    """
    bus = make_bus(settings)
    await bus.connect()
    lbus = laddr_bus(settings)
    ours, theirs, ratios = Runs(), Runs(), []
    try:
        await sandbox_once(bus)  # warm: connections, the response listener
        await laddr_once(lbus)  # warm: its connection / producer
        for _ in range(runs):
            a: list[float] = []
            b: list[float] = []
            if laddr_first:
                b = [await laddr_once(lbus) for _ in range(laddr_n)]
            every = max(1, sandbox_n // max(1, laddr_n))
            for i in range(sandbox_n):
                a.append(await sandbox_once(bus))
                if len(b) < laddr_n and i % every == 0:
                    b.append(await laddr_once(lbus))
            while len(b) < laddr_n:
                b.append(await laddr_once(lbus))
            ours.add(a)
            theirs.add(b)
            ratios.append(median(b) / median(a))
    finally:
        await close_laddr(lbus)
        await bus.close()
    return ours, theirs, ratios


async def responses_on_topic(settings: Settings) -> int:
    """How many responses laddr.responses holds (end minus start offsets over its partitions)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([KAFKA_RESPONSES])
    finally:
        await admin.close()
    tps = [TopicPartition(KAFKA_RESPONSES, p["partition"])
           for entry in described if entry.get("topic") == KAFKA_RESPONSES for p in entry.get("partitions", [])]
    if not tps:
        return 0
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        return sum(ends[tp] - starts[tp] for tp in tps)
    finally:
        await consumer.stop()


async def fill_responses(settings: Settings, count: int, inflight: int = 200) -> None:
    """`count` real requests through the workers, many in flight: earlier responses on the topic."""
    if count <= 0:
        return
    bus = make_bus(settings)
    await bus.connect()
    left = count

    async def one() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await bus.request(AGENT, PAYLOAD, timeout=60)

    try:
        await asyncio.gather(*(one() for _ in range(min(inflight, count))))
    finally:
        await bus.close()


async def run(ctx: Context) -> list[Table]:
    o = ctx.options
    runs = o.repeats
    table = Table(
        "Request round trip, one at a time (send a task to `researcher`, get its response), ms",
        ["broker / client", "requests", "p50", "p99", "p50 min..max of runs", "Laddr / sandbox (p50)",
         "target", "verdict"],
    )
    for backend in o.backends:
        settings = await ctx.local_on(backend)
        n = o.n(300, 30)
        laddr_n = o.n(60 if backend == "redis" else 5, 6 if backend == "redis" else 1)
        before = await responses_on_topic(settings) if backend == "kafka" else None
        say(f"round trip on {backend}: {runs} runs of {n} sandbox + {laddr_n} Laddr requests")
        ours, theirs, ratios = await paired_runs(settings, runs, n, laddr_n)
        after = await responses_on_topic(settings) if backend == "kafka" else None
        lo, hi = ours.spread
        table.add(f"{backend}: sandbox", ours.count, ours.p50, ours.p99, f"{lo:.2f}..{hi:.2f}", "",
                  f"p50 <= {TARGET_MS[backend]:g}", verdict(ours.p50, TARGET_MS[backend], False))
        lo, hi = theirs.spread
        ratio = median(ratios)
        if backend == "redis":
            target, ok = "sandbox not slower", verdict(ratio, 1.0, True)
        else:
            target, ok = "sandbox >= 100x faster", verdict(ratio, 100.0, True)
        label = f"{backend}: Laddr 0.9.6" + (" (rebalance delay 0)" if backend == "kafka" else "")
        table.add(label, theirs.count, theirs.p50, theirs.p99, f"{lo:.1f}..{hi:.1f}", f"{ratio:.1f}x", target, ok)
        if before is not None:
            table.note(f"kafka rows: laddr.responses held {before:,} responses when they started and {after:,} at "
                       "the end (Laddr's cost grows with that number, see the next table)")
    table.note("the stack as `laddr-sandbox up` starts it (local runtime: supervisord, api, one worker per agent); "
               "Laddr's client talks to the same workers; the two clients alternate request by request")
    tables = [table]
    if "kafka" in o.backends:
        tables.append(await growth(ctx))
    return tables


async def growth(ctx: Context) -> Table:
    o = ctx.options
    levels = [0, 1_000, 10_000] if not o.smoke else [0, 200]
    table = Table(
        "Laddr 0.9.6's Kafka client vs the sandbox's as earlier responses pile up on laddr.responses, ms",
        ["broker rebalance delay", "earlier responses", "sandbox p50", "sandbox p99",
         "Laddr p50", "Laddr p99", "Laddr / sandbox (p50)", "verdict (>= 100x)"],
    )
    for delay in (0, 3000):
        settings, _ = await ctx.dedicated(f"kafka-delay-{delay}", "kafka",
                                          **{"group.initial.rebalance.delay.ms": str(delay)})
        filled = 0
        for level in levels:
            await fill_responses(settings, level - filled)
            filled = level
            have = await responses_on_topic(settings)
            # Laddr's request at 10,000 costs ~10 s at delay 0: a few requests per level
            laddr_n = o.n(3 if level >= 10_000 else 5, 1)
            runs = 1 if o.smoke else 2
            say(f"kafka delay {delay} ms, {have:,} earlier responses: {runs} runs of {laddr_n} Laddr requests")
            ours, theirs, ratios = await paired_runs(settings, runs, o.n(100, 20), laddr_n, laddr_first=True)
            filled = await responses_on_topic(settings)
            ratio = median(ratios)
            table.add(f"{delay} ms" + (" (sandbox's)" if delay == 0 else " (Kafka's default)"), have,
                      ours.p50, ours.p99, theirs.p50, theirs.p99, f"{ratio:,.0f}x", verdict(ratio, 100.0, True))
    table.note("throwaway brokers from the sandbox's launcher with a fresh laddr.responses, the five sandbox workers; "
               "earlier responses are real requests answered by the workers; at each level Laddr's requests go first, "
               "then the sandbox's (the first level's sandbox figures include the broker JVM warming up)")
    table.note("Laddr's wait_for_response joins a new consumer group (`wait-<task_id>`) per request and reads "
               "laddr.responses from the beginning, 100 records per poll with a 0.1 s sleep between polls")
    return table
