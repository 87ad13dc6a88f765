"""A load generator: many requests in flight through the sandbox's own client.

Run in-process by the throughput benchmark, or as a separate process
(`python -m bench.load ...`, prints one JSON line) so that several clients
do not share one interpreter lock.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from typing import Any

from sandbox.bus import make_bus
from sandbox.config import Settings

from .stack import settings_for

PAYLOADS: dict[str, dict[str, Any]] = {
    "researcher": {"query": "throughput of a sandbox"},
    "analyzer": {"facts": ["'throughput' has 1 word(s)", "source 1 mentions 'throughput'"]},
    "writer": {"topic": "throughput", "key_point": "it is fast", "count": 2},
    "validator": {"report": "Report on throughput: 2 fact(s) reviewed. Key point: it is fast."},
    "coordinator": {"query": "throughput of a sandbox"},
}
# tasks the workers handle per request: the coordinator asks the four others
TASKS_PER_REQUEST = {"coordinator": 5}


async def drive(
    settings: Settings, agents: list[str], inflight: int, start_at: float, seconds: float
) -> dict[str, Any]:
    """Keep `inflight` requests going until start_at+seconds; count those answered inside the window."""
    bus = make_bus(settings)
    await bus.connect()
    await bus.request(agents[0], PAYLOADS[agents[0]], timeout=60)  # warm: connection, listener
    end_at = start_at + seconds
    answered: dict[str, int] = {a: 0 for a in agents}
    everything: dict[str, int] = {a: 0 for a in agents}  # also outside the window (for CPU per task)
    latencies: list[float] = []
    errors = 0

    async def loop(k: int) -> None:
        nonlocal errors
        while time.time() < end_at:
            agent = agents[k % len(agents)]
            k += 1
            t0 = time.perf_counter()
            response = await bus.request(agent, PAYLOADS[agent], timeout=120)
            done = time.time()
            everything[agent] += 1
            if not response.ok:
                errors += 1
            elif start_at <= done <= end_at:
                answered[agent] += 1
                latencies.append((time.perf_counter() - t0) * 1000)

    try:
        await asyncio.gather(*(loop(i) for i in range(inflight)))
    finally:
        await bus.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    requests = sum(answered.values())
    tasks = sum(n * TASKS_PER_REQUEST.get(a, 1) for a, n in answered.items())
    all_tasks = sum(n * TASKS_PER_REQUEST.get(a, 1) for a, n in everything.items())
    return {"requests": requests, "tasks": tasks, "seconds": seconds, "errors": errors,
            "latencies": latencies, "answered": answered,
            "cpu_s": usage.ru_utime + usage.ru_stime, "all_tasks": all_tasks}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.load")
    p.add_argument("--backend", required=True)
    p.add_argument("--address", required=True)
    p.add_argument("--agents", required=True)
    p.add_argument("--inflight", type=int, default=100)
    p.add_argument("--start-at", type=float, required=True, help="epoch seconds the window opens")
    p.add_argument("--seconds", type=float, default=5.0)
    args = p.parse_args(argv)
    settings = settings_for(args.backend, args.address)
    result = asyncio.run(drive(settings, args.agents.split(","), args.inflight, args.start_at, args.seconds))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
