"""The ceiling: a bare request/answer loop on the same client libraries, no sandbox code.

    python -m bench.bare setup --backend kafka --address HOST:PORT --queues 4 --partitions 6
    python -m bench.bare serve --backend redis --address redis://... --queue bench-bare-0 --batch 16
    python -m bench.bare load  --backend redis --address ... --agents bench-bare-0,... \
        --inflight 128 --start-at EPOCH --seconds 8
    python -m bench.bare serve --backend redis --address ... --queue laddr:tasks:researcher \
        --group researcher_workers --answer-prefix laddr:response:    # in the sandbox's own wire

The broker operations per task are the sandbox's: on Redis XADD (client),
XREADGROUP, SET+PUBLISH, XACK (echo server; one pipeline per batch read), the
answer seen by a pattern subscription; on Kafka produce (client), fetch
(consumer group), produce the answer, commit once the answers are out (echo
server), the answer seen by a client-side consumer. Tasks and answers are
small JSON documents (orjson, as the sandbox uses). `load` prints one JSON
line shaped like `bench.load`'s, so the benchmark reads both the same way.
With `--group` (the agent's own consumer group), `--answer-prefix` (Redis) and
`--answers` (Kafka) naming the sandbox's, either side talks to the sandbox's
other side: bench/rt_split.py crosses them.

The layout is an argument, because it moves the ceiling a lot: how many
partitions the Kafka topics have (`--partitions`, the sandbox's
KAFKA_PARTITIONS) and how many tasks an echo server takes per read
(`--batch`, the sandbox's WORKER_CONCURRENCY). `--answers` names the answers
topic, so that each layout has topics of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import resource
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

import orjson

GROUP = "bench-bare"
ANSWERS = "bench-bare-answers"  # the default answers topic (Kafka)
PREFIX = b"bench-bare:answer:"


def answer_of(raw: bytes) -> tuple[bytes, bytes]:
    task = orjson.loads(raw)
    tid = task["task_id"]
    return tid.encode(), orjson.dumps({"task_id": tid, "status": "success", "result": {"echo": task["payload"]}})


# -- echo servers ------------------------------------------------------------------
@dataclass(frozen=True)
class Wire:
    """Names on the broker: the bench's own by default, or the sandbox's (bench/rt_split.py)."""

    answers: str = ANSWERS  # Kafka: the answers' topic
    prefix: bytes = PREFIX  # Redis: the answer key and channel, before the task id
    group: str | None = None  # the echo server's consumer group (default: the bench's own)


async def serve_redis(address: str, queue: str, wire: Wire, batch: int, stop: asyncio.Event) -> None:
    import redis.asyncio as aioredis
    from redis.exceptions import ResponseError

    r = aioredis.Redis.from_url(address)
    group = wire.group or GROUP
    try:
        await r.xgroup_create(queue, group, id="0", mkstream=True)
    except ResponseError:
        pass  # there already: the bench's own from an earlier run, or the agent's
    print("ready", flush=True)
    while not stop.is_set():
        read = await r.xreadgroup(group, "echo", {queue: ">"}, count=batch, block=200)
        pipe = r.pipeline(transaction=False)
        ids = []
        for _, entries in read or []:
            for entry_id, fields in entries:
                tid, raw = answer_of(fields[b"data"])
                pipe.set(wire.prefix + tid, raw, ex=60)
                pipe.publish(wire.prefix + tid, raw)
                ids.append(entry_id)
        if ids:
            pipe.xack(queue, group, *ids)  # after the answers, in the same round trip
            await pipe.execute()
    await r.xgroup_delconsumer(queue, group, "echo")  # everything it read is acknowledged
    await r.aclose()


async def serve_kafka(address: str, queue: str, wire: Wire, batch: int, stop: asyncio.Event) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    answers = wire.answers
    producer = AIOKafkaProducer(bootstrap_servers=address, acks="all", linger_ms=0)
    consumer = AIOKafkaConsumer(queue, bootstrap_servers=address, group_id=wire.group or f"{GROUP}-{queue}",
                                enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=100)
    await producer.start()
    await consumer.start()
    ready = False
    while not stop.is_set():
        batches = await consumer.getmany(timeout_ms=200, max_records=batch)
        if not ready and consumer.assignment():
            ready = True
            print("ready", flush=True)  # joined: from now on a task is answered
        sends = []
        for records in batches.values():
            for record in records:
                tid, raw = answer_of(record.value)
                sends.append(await producer.send(answers, raw, key=tid))
        if sends:
            await asyncio.gather(*sends)  # the answers are out: now commit
            await consumer.commit()
    await consumer.stop()
    await producer.stop()


# -- load clients ------------------------------------------------------------------
class Waiters:
    def __init__(self) -> None:
        self.futures: dict[bytes, asyncio.Future[bytes]] = {}

    def add(self, tid: bytes) -> asyncio.Future[bytes]:
        fut = self.futures[tid] = asyncio.get_running_loop().create_future()
        return fut

    def resolve(self, tid: bytes, raw: bytes) -> None:
        fut = self.futures.pop(tid, None)
        if fut is not None and not fut.done():
            fut.set_result(raw)


class RedisLoad:
    def __init__(self, address: str, prefix: bytes = PREFIX):
        import redis.asyncio as aioredis

        self.r = aioredis.Redis.from_url(address)
        self.prefix = prefix
        self.waiters = Waiters()
        self.outbox: list[tuple[str, bytes]] = []
        self.wake = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        ready = asyncio.Event()
        self.tasks = [asyncio.create_task(self._listen(ready)), asyncio.create_task(self._send())]
        await ready.wait()

    async def _listen(self, ready: asyncio.Event) -> None:
        pubsub = self.r.pubsub()
        await pubsub.psubscribe(self.prefix + b"*")
        async for message in pubsub.listen():
            if message["type"] in (b"psubscribe", "psubscribe"):
                ready.set()
            elif message["type"] in (b"pmessage", "pmessage"):
                self.waiters.resolve(message["channel"][len(self.prefix):], message["data"])

    async def _send(self) -> None:  # the XADDs of one loop turn in one pipeline
        while True:
            await self.wake.wait()
            self.wake.clear()
            batch, self.outbox = self.outbox, []
            pipe = self.r.pipeline(transaction=False)
            for queue, raw in batch:
                pipe.xadd(queue, {b"data": raw})
            await pipe.execute()

    async def request(self, queue: str, tid: bytes, raw: bytes) -> bytes:
        fut = self.waiters.add(tid)
        self.outbox.append((queue, raw))
        self.wake.set()
        return await fut

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.r.aclose()


class KafkaLoad:
    def __init__(self, address: str, answers: str):
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        self.producer = AIOKafkaProducer(bootstrap_servers=address, acks="all", linger_ms=0)
        self.consumer = AIOKafkaConsumer(answers, bootstrap_servers=address, auto_offset_reset="latest",
                                         enable_auto_commit=False, fetch_max_wait_ms=100)
        self.waiters = Waiters()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.producer.start()
        await self.consumer.start()
        while not self.consumer.assignment():
            await asyncio.sleep(0.05)
        for tp in self.consumer.assignment():
            await self.consumer.position(tp)  # pinned at the end now, before any request goes out
        self.task = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        while True:
            for records in (await self.consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    self.waiters.resolve(record.key, record.value)

    async def request(self, queue: str, tid: bytes, raw: bytes) -> bytes:
        fut = self.waiters.add(tid)
        await (await self.producer.send(queue, raw, key=tid))
        return await fut

    async def close(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.consumer.stop()
        await self.producer.stop()


async def drive(backend: str, address: str, queues: list[str], wire: Wire, inflight: int, start_at: float,
                seconds: float) -> dict[str, Any]:
    client = RedisLoad(address, wire.prefix) if backend == "redis" else KafkaLoad(address, wire.answers)
    await client.start()
    ids = itertools.count()
    prefix = f"{os.getpid()}-"
    end_at = start_at + seconds
    latencies: list[float] = []
    counts = {"requests": 0, "all": 0}

    async def one(queue: str) -> None:
        tid = f"{prefix}{next(ids)}"
        raw = orjson.dumps({"task_id": tid, "agent_name": queue, "payload": {"query": "throughput of a sandbox"}})
        await asyncio.wait_for(client.request(queue, tid.encode(), raw), 60)

    async def loop(k: int) -> None:
        while time.time() < end_at:
            queue = queues[k % len(queues)]
            k += 1
            t0 = time.perf_counter()
            await one(queue)
            done = time.time()
            counts["all"] += 1
            if start_at <= done <= end_at:
                counts["requests"] += 1
                latencies.append((time.perf_counter() - t0) * 1000)

    try:
        await one(queues[0])  # warm: connections, subscription
        await asyncio.gather(*(loop(i) for i in range(inflight)))
    finally:
        await client.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"requests": counts["requests"], "tasks": counts["requests"], "seconds": seconds, "errors": 0,
            "latencies": latencies, "cpu_s": usage.ru_utime + usage.ru_stime, "all_tasks": counts["all"]}


async def setup_kafka(address: str, queues: list[str], answers: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=address)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [NewTopic(t, partitions, 1) for t in [*queues, answers] if t not in existing]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


async def serve(backend: str, address: str, queue: str, wire: Wire, batch: int) -> None:
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await (serve_redis if backend == "redis" else serve_kafka)(address, queue, wire, batch, stop)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bare")
    p.add_argument("mode", choices=("setup", "serve", "load"))
    p.add_argument("--backend", required=True, choices=("redis", "kafka"))
    p.add_argument("--address", required=True)
    p.add_argument("--queue", default="bench-bare-0")
    p.add_argument("--queues", default="bench-bare-0,bench-bare-1,bench-bare-2,bench-bare-3",
                   help="setup: the queues' topics")
    p.add_argument("--answers", default=ANSWERS, help="the answers' topic (Kafka)")
    p.add_argument("--answer-prefix", default=PREFIX.decode(), help="the answers' key and channel prefix (Redis)")
    p.add_argument("--group", default=None, help="serve: the consumer group (default: the bench's own)")
    p.add_argument("--partitions", type=int, default=1, help="setup: partitions per topic (Kafka)")
    p.add_argument("--batch", type=int, default=64, help="serve: the most tasks taken per read")
    p.add_argument("--agents", default="bench-bare-0", help="load: the queues, round-robin")
    p.add_argument("--inflight", type=int, default=100)
    p.add_argument("--start-at", type=float, default=0.0)
    p.add_argument("--seconds", type=float, default=5.0)
    a = p.parse_args(argv)
    wire = Wire(a.answers, a.answer_prefix.encode(), a.group)
    if a.mode == "setup":
        if a.backend == "kafka":
            asyncio.run(setup_kafka(a.address, a.queues.split(","), a.answers, a.partitions))
    elif a.mode == "serve":
        asyncio.run(serve(a.backend, a.address, a.queue, wire, a.batch))
    else:
        result = asyncio.run(drive(a.backend, a.address, a.agents.split(","), wire, a.inflight, a.start_at,
                                   a.seconds))
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
