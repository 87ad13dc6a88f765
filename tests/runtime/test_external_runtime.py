"""The external runtime against real brokers it did not start (the session's).

It must start nothing, see the broker and the workers someone else runs, and
refuse everything that would manage processes.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from sandbox.bus import make_bus
from sandbox.config import Settings
from sandbox.protocol import expected_channels
from sandbox.runtime import make_runtime
from sandbox.runtime.base import RuntimeFailure, ServiceStatus
from sandbox.runtime.external import ExternalRuntime
from tests.procs import start_worker


def external(backend: str, request: pytest.FixtureRequest, **overrides: object) -> ExternalRuntime:
    settings = Settings(queue_backend=backend, env_file=None, heartbeat_s=1.0)
    if backend == "redis":
        settings = replace(settings, redis_url=request.getfixturevalue("redis_url"))
    else:
        settings = replace(settings, kafka_bootstrap=request.getfixturevalue("kafka_bootstrap"))
    runtime = make_runtime("external", replace(settings, **overrides))
    assert isinstance(runtime, ExternalRuntime)
    return runtime


@pytest.fixture
def nothing_listens() -> Iterator[int]:
    """A loopback port with no server behind it (held closed while the test runs)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@pytest.mark.parametrize("backend", ["redis", "kafka"])
async def test_up_checks_the_broker_and_makes_the_topology(backend: str, request: pytest.FixtureRequest) -> None:
    runtime = external(backend, request)
    steps: list[str] = []
    await runtime.up(backend, steps.append)
    assert steps and "answers" in steps[-1]
    async with make_bus(runtime.bus_settings(backend)) as bus:
        assert set(expected_channels(backend)) <= set(await bus.channels())
    assert await runtime.current_backend() == backend
    broker = (await runtime.services())[0]
    assert (broker.name, broker.kind, broker.health, broker.state) == (backend, "broker", "healthy", "running")


@pytest.mark.parametrize("backend", ["redis", "kafka"])
async def test_services_show_the_workers_someone_else_runs(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    runtime = external(backend, request)
    await runtime.up(backend)
    worker = start_worker("analyzer", runtime.bus_settings(backend), tmp_path, worker_id="analyzer-elsewhere-1",
                          LADDR_HEARTBEAT_MS="1000")
    try:
        worker.wait_for("serving agent", timeout=60)

        async def analyzer() -> ServiceStatus:
            return {s.name: s for s in await runtime.services()}["analyzer_worker"]

        status = await analyzer()
        assert status.kind == "worker" and status.health == "healthy" and status.state == "running"
        if backend == "redis":
            assert [r.name for r in status.replicas] == ["analyzer-elsewhere-1"]
        else:
            # Kafka names the group's members; one has joined once the group settled
            assert status.replicas
    finally:
        worker.terminate()


async def test_everything_that_manages_processes_is_refused(request: pytest.FixtureRequest) -> None:
    runtime = external("redis", request)
    assert runtime.manages_processes is False
    for call in (
        runtime.down(),
        runtime.scale("writer_worker", 2),
        runtime.restart("writer_worker"),
        runtime.kill_replica("writer_worker", 1),
        runtime.start_broker("kafka"),
        runtime.stop_broker("redis"),
        runtime.stop_apps(),
        runtime.start_apps("redis"),
    ):
        with pytest.raises(RuntimeFailure, match="does not manage processes"):
            await call
    with pytest.raises(RuntimeFailure, match="logs"):
        runtime.logs("writer_worker")


@pytest.mark.parametrize("backend", ["redis", "kafka"])
async def test_a_broker_that_does_not_answer(backend: str, nothing_listens: int, request: pytest.FixtureRequest) -> None:
    runtime = external(backend, request, redis_url=f"redis://127.0.0.1:{nothing_listens}/0",
                       kafka_bootstrap=f"127.0.0.1:{nothing_listens}")
    with pytest.raises(RuntimeFailure, match=f"cannot reach {backend}.*{nothing_listens}"):
        await runtime.up(backend)
    assert await runtime.current_backend() is None
    [broker] = await runtime.services()
    assert broker.health == "unhealthy" and broker.ports == [nothing_listens]


def test_unknown_runtime_kind_is_refused() -> None:
    with pytest.raises(RuntimeFailure, match="unknown runtime"):
        make_runtime("podman", Settings(env_file=None))
