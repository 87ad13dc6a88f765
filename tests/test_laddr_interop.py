"""A real Laddr 0.9.6 client and worker interoperate with the sandbox, on both brokers.

Laddr's own `RedisBus` / `KafkaBus` (from the wheel on PyPI) talk to the
sandbox's workers and clients over real brokers: nothing is translated.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from bench.laddr096 import load
from sandbox.bus import Bus
from sandbox.config import Settings
from sandbox.protocol import AgentInfo
from tests.procs import start_worker, unique_agent, write_agent


@pytest.fixture(scope="module")
def laddr():
    return load()


def laddr_bus(laddr, settings: Settings):
    if settings.queue_backend == "redis":
        return laddr.RedisBus(settings.redis_url)
    return laddr.KafkaBus(settings.kafka_bootstrap)


async def close_laddr(bus) -> None:
    if hasattr(bus, "_client") and bus._client is not None:
        await bus._client.aclose()
    for consumer in getattr(bus, "_consumers", {}).values():
        await consumer.stop()
    if getattr(bus, "_producer", None) is not None:
        await bus._producer.stop()


@pytest.fixture
def worker(settings: Settings, tmp_path) -> Iterator[str]:
    """One sandbox worker for a fresh agent; yields the agent's name."""
    agent = unique_agent()
    write_agent(tmp_path / "agents", agent)
    proc = start_worker(agent, settings, tmp_path, worker_id="sandbox-worker", LADDR_AGENTS_DIR=str(tmp_path / "agents"))
    try:
        proc.wait_for("serving agent", 60)
        yield agent
    finally:
        assert proc.terminate() == 0


async def test_laddrs_client_gets_answers_from_sandbox_workers(laddr, settings: Settings, bus: Bus, worker: str) -> None:
    client = laddr_bus(laddr, settings)
    try:
        task_id = await client.publish_task(worker, {"query": "from laddr"})
        response = await client.wait_for_response(task_id, 60)
    finally:
        await close_laddr(client)
    assert response["task_id"] == task_id and response["status"] == "success"
    assert response["result"]["echo"] == {"query": "from laddr"}
    assert response["worker_id"] == "sandbox-worker"


async def test_a_laddr_worker_answers_sandbox_requests(laddr, settings: Settings, bus: Bus) -> None:
    """Laddr's consume_tasks + publish_response on one side, the sandbox's request on the other."""
    agent = unique_agent()
    await bus.ensure_topology([agent], partitions=1)
    laddr_worker = laddr_bus(laddr, settings)

    async def serve_one() -> None:
        for _ in range(120):
            for task in await laddr_worker.consume_tasks(agent, 500, 10):
                await laddr_worker.publish_response(
                    task["task_id"],
                    {"task_id": task["task_id"], "status": "success", "result": {"seen": task["payload"]}},
                )
                return

    serving = asyncio.create_task(serve_one())
    try:
        response = await bus.request(agent, {"query": "from the sandbox"}, timeout=60)
        await asyncio.wait_for(serving, 30)
    finally:
        serving.cancel()
        await close_laddr(laddr_worker)
    # On Kafka the sandbox's tasks carry job_id = task id: Laddr's Agent echoes it, the one
    # thing its key-less, task_id-less Kafka answers can be matched by.
    asked = {"query": "from the sandbox", **({"job_id": response.task_id} if settings.queue_backend == "kafka" else {})}
    assert response.ok and response.result == {"seen": asked}


async def test_laddrs_registry_entries_are_the_sandboxes(laddr, settings: Settings, bus: Bus) -> None:
    if settings.queue_backend == "kafka":
        # Laddr's KafkaBus keeps its registry in its own memory, so there is nothing
        # on the broker to share; the sandbox's compacted topic is read back instead.
        name = unique_agent("reg")
        await bus.register_agent(AgentInfo(name=name, role="r", goal="g"))
        assert (await bus.agents())[name].role == "r"
        return
    client = laddr_bus(laddr, settings)
    name = unique_agent("reg")
    try:
        await client.register_agent(name, {"role": "Laddr agent", "goal": "interop", "tools": ["t"]})
        seen_by_laddr_before = await client.get_registered_agents()
        await bus.register_agent(AgentInfo(name=name + "x", role="sandbox agent", goal="g"))
        seen_by_laddr = await client.get_registered_agents()
    finally:
        await close_laddr(client)
    ours = await bus.agents()
    assert ours[name].role == "Laddr agent" and ours[name].tools == ["t"] and ours[name].status == "active"
    assert name in seen_by_laddr_before and seen_by_laddr[name + "x"]["role"] == "sandbox agent"
