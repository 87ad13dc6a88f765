"""The live tap (`watch`, the TUI's Messages view) following the broker.

A producer that needs no client library (pipelined raw XADDs on Redis, Kafka's
own Java ProducerPerformance on Kafka) writes task messages to an agent queue
no worker consumes, while the sandbox's `Bus.tap()` follows the broker from
its end. Two cases: a burst as fast as the producer goes (what the tap can
take at most), and a steady 50,000 messages/s, where "without falling
behind" means the tap's delay (receipt time minus the message's broker
timestamp) stays bounded and is small when the producer stops.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time

import orjson

from sandbox.bus import Bus, make_bus
from sandbox.config import Settings
from sandbox.protocol import kafka_topic, redis_stream

from . import produce
from .context import Context, say
from .report import Runs, Table, median, percentile, verdict
from .stack import ROOT

AGENT = "tapbench"  # a queue nobody consumes
TARGET = 50_000.0


class Follower:
    """Counts the tap's messages of the benchmark queue and how late each one arrived."""

    def __init__(self, bus: Bus):
        self.bus = bus
        self.ready = asyncio.Event()
        self.count = 0
        self.first = self.last = 0.0
        self.lags: list[float] = []
        self.last_lag = 0.0
        self.goal = 0
        self.done = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.cancel_s = 0.0

    async def run(self) -> None:
        async for m in self.bus.tap():
            if m.agent != AGENT:
                continue
            now = time.time()
            if not self.ready.is_set():
                if m.doc and m.doc.get("marker"):
                    self.ready.set()
                continue
            if m.doc and m.doc.get("marker"):
                continue
            self.count += 1
            if self.count == 1:
                self.first = now
            self.last = now
            if self.count % 50 == 0:
                self.lags.append(now - m.timestamp)
            if self.goal and self.count >= self.goal:
                self.last_lag = now - m.timestamp
                self.done.set()

    async def start(self) -> None:
        self.task = asyncio.create_task(self.run())
        deadline = time.monotonic() + 60
        while not self.ready.is_set():  # the tap positions itself at the end first: wait until it sees us
            if self.task.done():
                self.task.result()
            if time.monotonic() > deadline:
                raise RuntimeError("the tap never saw the marker message")
            await self.bus.publish_raw(AGENT, orjson.dumps({"marker": True, "task_id": "marker",
                                                            "agent_name": AGENT, "payload": {}}))
            try:
                await asyncio.wait_for(asyncio.shield(self.ready.wait()), 0.5)
            except TimeoutError:
                pass

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            # A cancelled Redis tap has been seen to stay "cancelling" for many seconds
            # (inside the tap generator); do not let that stall the benchmark.
            started = time.monotonic()
            await asyncio.wait([self.task], timeout=3.0)
            self.task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self.cancel_s = time.monotonic() - started


async def produce_messages(settings: Settings, total: int, rate: float, ctx: Context) -> float:
    """Run the producer to the end; returns its messages/s."""
    if settings.queue_backend == "redis":
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.produce", "redis", settings.redis_url, redis_stream(AGENT), str(total),
            str(rate), stdout=asyncio.subprocess.PIPE, cwd=ROOT, env=env)
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"the Redis producer exited {proc.returncode}")
        return float(out.decode().strip().splitlines()[-1])
    payloads = produce.payload_file(ctx.root / "tap", AGENT)
    argv = produce.kafka_argv(settings.kafka_bootstrap, kafka_topic(AGENT), payloads, total, rate)
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"ProducerPerformance exited {proc.returncode}: {err.decode()[-500:]}")
    # last line: "500000 records sent, 49975.0 records/sec (9.53 MB/sec), ..."
    found = re.findall(r"records sent, ([\d.]+) records/sec", out.decode())
    return float(found[-1]) if found else float("nan")


async def one_case(settings: Settings, total: int, rate: float, ctx: Context) -> dict[str, float]:
    bus = make_bus(settings)
    await bus.connect()
    await bus.ensure_topology([AGENT])
    follower = Follower(bus)
    try:
        await follower.start()
        follower.goal = total
        produced_at = time.time()
        producer_rate = await produce_messages(settings, total, rate, ctx)
        producer_done = time.time()
        expected = total / rate if rate > 0 else (producer_done - produced_at)
        try:
            await asyncio.wait_for(follower.done.wait(), max(30.0, 3 * expected))
        except TimeoutError:
            pass
        span = follower.last - follower.first
        return {
            "tap_rate": (follower.count - 1) / span if follower.count > 1 and span > 0 else float("nan"),
            "producer_rate": producer_rate,
            "seen": follower.count,
            "lag_p50": 1000 * percentile(follower.lags, 50),
            "lag_p99": 1000 * percentile(follower.lags, 99),
            "lag_end": 1000 * follower.last_lag if follower.done.is_set() else float("nan"),
            "behind_producer": 1000 * max(0.0, follower.last - producer_done),
        }
    finally:
        await follower.stop()
        await clear_queue(bus)
        await bus.close()


async def clear_queue(bus: Bus) -> None:
    """Drop the benchmark's messages (Redis keeps streams in memory)."""
    if bus.backend == "redis":
        await bus.client.redis.delete(redis_stream(AGENT))  # type: ignore[attr-defined]


async def run(ctx: Context) -> list[Table]:
    o = ctx.options
    runs = max(1, min(o.repeats, 3))
    seconds = 2.0 if o.smoke else 10.0
    burst = o.n(300_000, 60_000)
    table = Table(
        "Live tap (watch) following the broker, messages/s",
        ["broker / case", "messages", "producer msg/s", "tap msg/s", "tap msg/s min..max",
         "delay p50 ms", "delay p99 ms", "delay at end ms", "target", "verdict"],
    )
    for backend in o.backends:
        settings = await ctx.local_on(backend)
        cases = [("burst (producer flat out)", burst, 0.0), (f"steady {TARGET:,.0f}/s for {seconds:g}s",
                                                             int(TARGET * seconds), TARGET)]
        for label, total, rate in cases:
            results = []
            for r in range(runs):
                say(f"tap on {backend}, {label}: run {r + 1}/{runs}")
                results.append(await one_case(settings, total, rate, ctx))
            tap = Runs()
            for res in results:
                tap.add(res["tap_rate"])
            lo, hi = tap.spread
            med = {k: median(res[k] for res in results) for k in results[0]}
            if rate > 0:
                # kept up: the tap's rate is the producer's and it ends less than a second behind
                kept = med["tap_rate"] >= 0.97 * min(rate, med["producer_rate"]) and med["lag_end"] < 1000
                ok = verdict(med["tap_rate"], TARGET, True) if kept else "MISSED (fell behind)"
                target = f"{TARGET:,.0f}/s, not behind"
            else:
                ok = verdict(med["tap_rate"], TARGET, True)
                target = f">= {TARGET:,.0f}/s"
            table.add(f"{backend}: {label}", total, med["producer_rate"], med["tap_rate"], f"{lo:,.0f}..{hi:,.0f}",
                      med["lag_p50"], med["lag_p99"], med["lag_end"], target, ok)
    table.note("delay = when the tap yielded a message minus the broker's timestamp of it (Redis stream id, "
               "Kafka record time); it includes the tap's decoding of every message into a TapMessage")
    table.note("a burst measures the tap's ceiling only while the producer outruns it (producer msg/s > tap msg/s)")
    return [table]
