"""Redis restarted under load: the guide's Redis (no persistence) beside the sandbox's (AOF, everysec).

Tasks are published while no worker consumes them, redis-server is killed -9 mid-stream and
started again on the same data dir; what its stream still holds is what a worker would get.
The guide's claim that Redis is ephemeral holds for its own config: all of it is gone. With the
AOF every acknowledged task survives a process crash (the write() precedes the reply; only an OS
crash could lose up to the last second, which fsync everysec bounds).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from sandbox.brokers.ports import free_port
from sandbox.brokers.redis_server import RedisSpec, wait_redis_ready
from sandbox.bus import Bus, BusError, make_bus
from sandbox.config import Settings
from tests.procs import unique_agent
from tests.reliability.harness import Outcome

pytestmark = pytest.mark.timeout(180)

# what the migration guide's docker-compose gave Redis: no AOF, no RDB snapshots
NO_PERSISTENCE = {"--appendonly": "no", "--save": ""}


def argv_for(spec: RedisSpec, persistence: bool) -> list[str]:
    argv, _ = spec.prepare()
    if not persistence:
        for flag, value in NO_PERSISTENCE.items():
            argv[argv.index(flag) + 1] = value
    return argv


def start(argv: list[str], out: Path) -> subprocess.Popen:
    with out.open("ab") as sink:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)


def kill9(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(30)


async def publish(bus: Bus, agent: str, total: int, per_second: float, acked: list[str], stop: asyncio.Event) -> None:
    for i in range(total):
        if stop.is_set():
            return
        try:
            acked.append((await bus.publish_task(agent, {"i": i})).task_id)
        except BusError:
            pass  # the server is down: not acknowledged, so not expected back
        await asyncio.sleep(1 / per_second)


@pytest.mark.parametrize("persistence", [False, True], ids=["guide-no-persistence", "sandbox-aof-everysec"])
async def test_r1_redis_restart_under_load(persistence: bool, tmp_path: Path, record) -> None:
    spec = RedisSpec(tmp_path / "data", port=free_port())
    argv = argv_for(spec, persistence)
    out = tmp_path / "redis.out"
    proc = start(argv, out)
    agent = unique_agent("r1")
    started = time.monotonic()
    try:
        await wait_redis_ready(spec.url, 30)
        settings = Settings(queue_backend="redis", redis_url=spec.url, env_file=None)
        async with make_bus(settings) as bus:
            await bus.ensure_topology([agent])
            acked: list[str] = []
            stop = asyncio.Event()
            producing = asyncio.create_task(publish(bus, agent, 400, 200, acked, stop))
            while len(acked) < 200 and not producing.done():
                await asyncio.sleep(0.05)
            before = len(acked)
            kill9(proc)  # mid-stream, as a crash would
            await asyncio.sleep(0.5)
            proc = start(argv, out)
            await wait_redis_ready(spec.url, 30)
            await asyncio.wait_for(producing, 60)
        async with make_bus(settings) as bus:  # a fresh client, as a worker starting now would be
            [stats] = await bus.queue_stats([agent])
        kept = stats.length
        name = "r1 redis restart " + ("AOF everysec" if persistence else "no persistence")
        outcome = Outcome(scenario=name, backend="redis", sent=len(acked), answered=kept,
                          lost=max(0, len(acked) - kept), seconds=round(time.monotonic() - started, 1),
                          notes={"acked_before_kill": before, "kept": kept}, loss_intended=not persistence)
        record(outcome)
    finally:
        kill9(proc)
    if persistence:
        assert kept >= len(acked), f"the AOF lost {len(acked) - kept} acknowledged task(s)"
    else:
        assert kept < before, "without persistence a restart cannot keep what was published before it"
