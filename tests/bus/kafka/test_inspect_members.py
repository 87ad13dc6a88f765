"""Queue stats on a real Kafka broker: a replica killed and started again is one consumer, not two,
and while the group rebalances nobody is called idle; aiokafka's coordinator retry is no ERROR."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
from aiokafka.errors import CoordinatorNotAvailableError

from sandbox.bus import make_bus
from sandbox.bus.kafka.quiet import COORDINATOR_LOOKUP, quiet_aiokafka
from sandbox.config import Settings
from sandbox.protocol import kafka_group, kafka_topic
from tests.procs import unique_agent

MEMBER = """
import asyncio, sys
from aiokafka import AIOKafkaConsumer

async def main():
    consumer = AIOKafkaConsumer(sys.argv[2], bootstrap_servers=sys.argv[1], group_id=sys.argv[3],
                                client_id="researcher_worker-3", session_timeout_ms=20000,
                                heartbeat_interval_ms=1000)
    await consumer.start()
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=200)
    print("ready", flush=True)
    while True:
        await consumer.getmany(timeout_ms=500)

asyncio.run(main())
"""


def member(bootstrap: str, topic: str, group: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", MEMBER, bootstrap, topic, group], stdout=subprocess.PIPE, text=True)
    return proc


@pytest.mark.timeout(180)
async def test_a_killed_and_restarted_replica_is_one_consumer_and_never_idle(kafka_bootstrap: str) -> None:
    agent = unique_agent("members")
    settings = replace(Settings(queue_backend="kafka", env_file=None), kafka_bootstrap=kafka_bootstrap)
    topic, group = kafka_topic(agent), kafka_group(agent)
    async with make_bus(settings, "kafka") as bus:
        await bus.ensure_topology([agent], partitions=6)
        first = member(kafka_bootstrap, topic, group)
        second = None
        try:
            assert (await asyncio.to_thread(first.stdout.readline)).strip() == "ready"
            os.kill(first.pid, signal.SIGKILL)  # it stays a member until its session times out (20 s)
            first.wait()
            second = member(kafka_bootstrap, topic, group)  # the runtime starts it again, same name
            ready = asyncio.ensure_future(asyncio.to_thread(second.stdout.readline))
            seen = []
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                [stats] = await bus.queue_stats([agent])
                seen.append(stats)
                names = [c.name for c in stats.consumers]
                assert names in ([], ["researcher_worker-3"]), names  # never twice
                assert stats.idle_consumers == [], stats  # the one that left is not counted as idle
                if ready.done() and not stats.rebalancing and stats.consumers[0].partitions == list(range(6)):
                    break
                await asyncio.sleep(0.3)
            else:
                raise AssertionError(f"the group never settled: {seen[-1]}")
            assert any(s.rebalancing for s in seen), "the kill went unseen: the test proved nothing"
        finally:
            for proc in (first, second):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait()


def test_a_coordinator_lookup_retried_at_start_is_logged_as_a_retry_not_an_error() -> None:
    import aiokafka.consumer.group_coordinator  # noqa: F401  (its logger, as workers have it)

    quiet_aiokafka()
    logger = logging.getLogger("aiokafka.consumer.group_coordinator")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.DEBUG)
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        logger.error(COORDINATOR_LOOKUP, CoordinatorNotAvailableError())
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    [record] = records
    assert record.levelno == logging.INFO and "retrying" in record.getMessage(), record.getMessage()
    assert "[Error 15]" in record.getMessage()
