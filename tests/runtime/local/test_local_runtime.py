"""The local runtime with a real supervisord, a real redis-server and a real Kafka.

Every stack lives in its own temp state folder and every fixture ends what it
started, even when a test fails: `down`, then any process still carrying the
folder's marker is killed with its process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from sandbox.bus import make_bus
from sandbox.config import Settings
from sandbox.protocol import expected_channels
from sandbox.runtime import detect_running, make_runtime
from sandbox.runtime.base import (
    RuntimeFailure,
    ServiceStatus,
    StackNotRunning,
    UnknownReplica,
    UnknownService,
    worker_services,
)

WORKER_SERVICES = worker_services(Settings())  # the five example agents'

from sandbox.runtime.local import LocalRuntime
from sandbox.runtime.local.logfollow import follow_files
from sandbox.runtime.local.procscan import alive_of, marked_pids, terminate
from sandbox.runtime.local.supervisor_client import SupervisorError, launch_supervisord

# settings a developer may have exported must not steer the tests
LEAKY_ENV = ("REDIS_URL", "KAFKA_BOOTSTRAP", "API_PORT", "API_HOST", "QUEUE_BACKEND", "LADDR_ENV_FILE",
             "LADDR_STATE_DIR", *(f"SCALE_{s.upper()}" for s in WORKER_SERVICES))


@pytest.fixture(scope="module", autouse=True)
def clean_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        for key in LEAKY_ENV:
            mp.delenv(key, raising=False)
        yield


def make_local(root: Path, **overrides: object) -> LocalRuntime:
    """A runtime for a temp project whose state folder is chosen with LADDR_STATE_DIR."""
    project, state = root / "project", root / "state"
    project.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LADDR_STATE_DIR", str(state))
        runtime = LocalRuntime(Settings(env_file=project / ".env", **overrides), cwd=project)
    assert runtime.dir.root == state.resolve()
    return runtime


async def finish(runtime: LocalRuntime) -> None:
    """down, and whatever still runs for this folder is killed with its group."""
    try:
        await asyncio.wait_for(runtime.down(), 120)
    except BaseException:
        pass
    finally:
        assert not await asyncio.to_thread(terminate, marked_pids(runtime.dir.root), 2.0)


@contextlib.asynccontextmanager
async def stack(root: Path, backend: str, **overrides: object) -> AsyncIterator[LocalRuntime]:
    runtime = make_local(root, **overrides)
    try:
        started = time.monotonic()
        await runtime.up(backend)
        runtime.cold_up_s = time.monotonic() - started  # type: ignore[attr-defined]
        print(f"\ncold up on {backend}: {runtime.cold_up_s:.1f}s")  # type: ignore[attr-defined]
        yield runtime
    finally:
        await finish(runtime)


async def eventually(check: Callable[[], Awaitable[object]], timeout: float = 30.0, every: float = 0.2) -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {check.__qualname__}")
        await asyncio.sleep(every)


async def by_name(runtime: LocalRuntime) -> dict[str, ServiceStatus]:
    return {s.name: s for s in await runtime.services()}


async def all_healthy(runtime: LocalRuntime) -> dict[str, ServiceStatus] | None:
    services = await by_name(runtime)
    return services if all(s.health == "healthy" and s.state == "running" for s in services.values()) else None


def pids_of(services: dict[str, ServiceStatus]) -> list[int]:
    return [r.pid for s in services.values() for r in s.replicas if r.pid]


@pytest.fixture(scope="module")
async def redis_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalRuntime]:
    async with stack(tmp_path_factory.mktemp("local-redis"), "redis") as runtime:
        yield runtime


# -- up ---------------------------------------------------------------------------------


async def test_up_runs_every_service_and_all_become_healthy(redis_stack: LocalRuntime) -> None:
    services = await eventually(lambda: all_healthy(redis_stack), timeout=20)
    assert list(services) == ["redis", "api", *WORKER_SERVICES]
    state = redis_stack.dir.load()
    assert services["redis"].kind == "broker" and services["redis"].ports == [state.ports["redis"]]
    assert services["api"].ports == [state.ports["api"]]
    for service in WORKER_SERVICES:
        assert [r.name for r in services[service].replicas] == [f"{service}-1"]
        assert services[service].replicas_label == "1/1"
    assert await redis_stack.current_backend() == "redis"
    # everything listens on loopback ports chosen for this folder
    settings = redis_stack.bus_settings("redis")
    assert settings.redis_url == f"redis://127.0.0.1:{state.ports['redis']}/0"
    async with make_bus(settings) as bus:
        assert set(expected_channels("redis")) <= set(await bus.channels())
        response = await bus.request("researcher", {"query": "local runtime"}, timeout=20)
    assert response.ok and response.worker_id == "researcher_worker-1"


async def test_up_again_attaches_and_the_other_backend_is_refused(redis_stack: LocalRuntime) -> None:
    before = sorted(pids_of(await by_name(redis_stack)))
    started = time.monotonic()
    await redis_stack.up("redis")
    assert time.monotonic() - started < 10
    assert sorted(pids_of(await by_name(redis_stack))) == before  # nothing restarted
    with pytest.raises(RuntimeFailure, match="laddr-sandbox switch kafka"):
        await redis_stack.up("kafka")


async def test_another_shell_finds_the_stack(redis_stack: LocalRuntime) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LADDR_STATE_DIR", str(redis_stack.dir.root))
        found = detect_running(redis_stack.settings)
        assert isinstance(found, LocalRuntime) and found.dir.root == redis_stack.dir.root
        assert await found.current_backend() == "redis"
        assert isinstance(make_runtime("local", redis_stack.settings), LocalRuntime)


# -- scale, kill, restart ---------------------------------------------------------------------


async def test_scale_a_worker_1_3_1_touches_only_the_replicas_that_change(redis_stack: LocalRuntime) -> None:
    before = await by_name(redis_stack)
    first = before["researcher_worker"].replicas[0].pid
    others = {n: [r.pid for r in s.replicas] for n, s in before.items() if n != "researcher_worker"}

    await redis_stack.scale("researcher_worker", 3)
    services = await by_name(redis_stack)
    researcher = services["researcher_worker"]
    assert [r.name for r in researcher.replicas] == [f"researcher_worker-{i}" for i in (1, 2, 3)]
    assert researcher.replicas_label == "3/3" and researcher.replicas[0].pid == first
    assert {n: [r.pid for r in s.replicas] for n, s in services.items() if n != "researcher_worker"} == others
    gone = [r.pid for r in researcher.replicas[1:]]

    await redis_stack.scale("researcher_worker", 1)
    researcher = (await by_name(redis_stack))["researcher_worker"]
    assert [r.name for r in researcher.replicas] == ["researcher_worker-1"]
    assert researcher.replicas[0].pid == first
    assert alive_of(gone) == []
    assert redis_stack.dir.load().scale["researcher_worker"] == 1


async def test_only_workers_scale(redis_stack: LocalRuntime) -> None:
    with pytest.raises(RuntimeFailure, match="only worker services scale"):
        await redis_stack.scale("api", 2)
    with pytest.raises(UnknownService):
        await redis_stack.scale("nope_worker", 2)
    with pytest.raises(RuntimeFailure, match="between 0 and"):
        await redis_stack.scale("writer_worker", 1000)


async def test_a_killed_replica_is_restarted_by_supervisor(redis_stack: LocalRuntime) -> None:
    old = (await by_name(redis_stack))["writer_worker"].replicas[0]
    await redis_stack.kill_replica("writer_worker", 1)

    async def back() -> object:
        replica = (await by_name(redis_stack))["writer_worker"].replicas[0]
        return replica.pid not in (None, old.pid) and replica.state == "running" and replica

    replica = await eventually(back, timeout=20)
    assert replica.restarts == old.restarts + 1
    assert alive_of([old.pid]) == []
    async with make_bus(redis_stack.bus_settings("redis")) as bus:
        assert (await bus.request("writer", {"topic": "after a kill"}, timeout=20)).ok
    with pytest.raises(UnknownReplica, match=r"writer_worker has replica\(s\) 1, not 7"):
        await redis_stack.kill_replica("writer_worker", 7)


async def test_restart_gives_new_processes(redis_stack: LocalRuntime) -> None:
    old = (await by_name(redis_stack))["analyzer_worker"].replicas[0]
    await redis_stack.restart("analyzer_worker")
    new = (await by_name(redis_stack))["analyzer_worker"].replicas[0]
    assert new.pid != old.pid and new.state == "running" and new.restarts == 0
    assert alive_of([old.pid]) == []


# -- logs -------------------------------------------------------------------------------------------


async def test_logs_tail_and_follow_every_replica_tagged(redis_stack: LocalRuntime) -> None:
    await redis_stack.scale("researcher_worker", 2)
    try:
        async with make_bus(redis_stack.bus_settings("redis")) as bus:  # lines to tail, also when run alone
            await asyncio.gather(*(bus.request("researcher", {"query": f"warm{i}"}, timeout=20) for i in range(2)))
        tail: list = []

        async def three_lines() -> bool:  # a worker's lines reach its log file a moment after the answer
            tail[:] = [line async for line in redis_stack.logs("researcher_worker", tail=3)]
            return len(tail) == 3

        await eventually(three_lines, timeout=10)
        assert {line.replica for line in tail} <= {"researcher_worker-1", "researcher_worker-2"}
        stamps = [line.timestamp for line in tail]
        assert None not in stamps and stamps == sorted(stamps)

        seen: list = []

        async def collect() -> None:
            async for line in redis_stack.logs("researcher_worker", tail=0, follow=True):
                seen.append(line)

        follower = asyncio.create_task(collect())
        try:
            await asyncio.sleep(0.5)
            async with make_bus(redis_stack.bus_settings("redis")) as bus:
                responses = await asyncio.gather(*(
                    bus.request("researcher", {"query": f"q{i}", "simulate": {"delay_ms": 100}}, timeout=20)
                    for i in range(8)
                ))

            def logged_all() -> bool:
                done = {r.task_id: r.worker_id for r in responses}
                hits = {tid: line.replica for line in seen for tid in done if tid in line.text and "done" in line.text}
                return len(hits) == len(done) and all(hits[t] == done[t] for t in done)

            async def check() -> bool:
                return logged_all()

            await eventually(check, timeout=10)
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
        assert {line.replica for line in seen} <= {"researcher_worker-1", "researcher_worker-2"}
        assert all(line.service == "researcher_worker" for line in seen)
    finally:
        await redis_stack.scale("researcher_worker", 1)

    broker = [line async for line in redis_stack.logs("redis", tail=2)]
    assert len(broker) == 2 and broker[0].replica == "redis"
    with pytest.raises(UnknownService):
        redis_stack.logs("nope")


async def test_follow_survives_rotation_and_truncation(tmp_path: Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text("2030-01-01 00:00:01,000 a1\n2030-01-01 00:00:03,000 a2\n")
    b.write_text("2030-01-01 00:00:02,000 b1\ntraceback line without a time\n2030-01-01 00:00:04,000 b2\npartial")
    got: list[tuple[str, str]] = []

    async def collect() -> None:
        async for tag, text, _ in follow_files(lambda: {"a": a, "b": b}, tail=4, follow=True, poll=0.02):
            got.append((tag, text))

    task = asyncio.create_task(collect())
    try:
        async def has(n: int) -> bool:
            return len(got) >= n

        await eventually(lambda: has(4), timeout=5, every=0.02)
        # the last 4 lines over both files in time order; the unstamped line keeps b1's time
        assert got[:4] == [("b", "2030-01-01 00:00:02,000 b1"), ("b", "traceback line without a time"),
                           ("a", "2030-01-01 00:00:03,000 a2"), ("b", "2030-01-01 00:00:04,000 b2")]
        with b.open("a") as f:
            f.write(" line\n")  # the partial line completes
        await eventually(lambda: has(5), timeout=5, every=0.02)
        assert got[4] == ("b", "partial line")
        with a.open("a") as f:
            f.write("before rotation\n")
        os.replace(a, tmp_path / "a.log.1")  # rotated as supervisor does it
        a.write_text("after rotation\n")
        await eventually(lambda: has(7), timeout=5, every=0.02)
        assert got[5:7] == [("a", "before rotation"), ("a", "after rotation")]
        b.write_text("")  # truncated
        await asyncio.sleep(0.1)
        b.write_text("fresh\n")
        await eventually(lambda: has(8), timeout=5, every=0.02)
        assert got[7] == ("b", "fresh")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# -- isolation and failures ---------------------------------------------------------------------------


async def test_two_sandboxes_do_not_collide_and_down_leaves_nothing(redis_stack: LocalRuntime, tmp_path: Path) -> None:
    first = await eventually(lambda: all_healthy(redis_stack), timeout=20)
    async with stack(tmp_path, "redis") as second:
        assert not set(second.dir.load().ports.values()) & set(redis_stack.dir.load().ports.values())
        services = await eventually(lambda: all_healthy(second), timeout=20)
        pids = pids_of(services) + [await second.sup.pid()]
        await second.down()
        assert alive_of(pids) == [] and marked_pids(second.dir.root) == []
        assert await second.current_backend() is None
    # the first stack did not notice
    assert sorted(pids_of(await eventually(lambda: all_healthy(redis_stack), timeout=20))) == sorted(pids_of(first))


async def test_a_stack_that_is_down(tmp_path: Path) -> None:
    runtime = make_local(tmp_path)
    assert await runtime.current_backend() is None
    services = await by_name(runtime)
    assert all(s.state == "stopped" and not s.replicas for s in services.values())
    with pytest.raises(StackNotRunning):
        await runtime.scale("writer_worker", 2)
    with pytest.raises(StackNotRunning):
        await runtime.kill_replica("writer_worker", 1)
    await runtime.down()  # nothing to do, no error


async def test_a_taken_port_is_one_clear_failure(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        runtime = make_local(tmp_path)
        try:
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("REDIS_URL", f"redis://127.0.0.1:{port}/0")
                with pytest.raises(RuntimeFailure, match=rf"port {port} \(REDIS_URL\) is taken"):
                    await runtime.up("redis")
            assert marked_pids(runtime.dir.root) == []
        finally:
            await finish(runtime)


async def test_a_taken_api_port_ends_what_the_failed_up_started(tmp_path: Path) -> None:
    """The broker was up already when the api's port turned out taken: nothing is left half up."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        runtime = make_local(tmp_path, api_port=port)
        try:
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("API_PORT", str(port))
                with pytest.raises(RuntimeFailure, match=rf"port {port} \(API_PORT\) is taken"):
                    await runtime.up("redis")
            assert marked_pids(runtime.dir.root) == [] and not runtime.running_sync()
            assert await runtime.current_backend() is None  # the next up starts afresh, not attaches
        finally:
            await finish(runtime)


async def test_missing_redis_server_is_one_clear_failure(tmp_path: Path) -> None:
    runtime = make_local(tmp_path)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PATH", str(tmp_path / "empty-bin"))
            with pytest.raises(RuntimeFailure, match="redis-server not found"):
                await runtime.up("redis")
        assert marked_pids(runtime.dir.root) == []
    finally:
        await finish(runtime)


async def test_a_malformed_env_file_starts_nothing(tmp_path: Path) -> None:
    runtime = make_local(tmp_path)
    (tmp_path / "project" / ".env").write_text("QUEUE_BACKEND=redis\nthis line is not an assignment\n")
    try:
        with pytest.raises(RuntimeFailure, match=r"\.env"):
            await runtime.up("redis")
        assert marked_pids(runtime.dir.root) == [] and not runtime.dir.socket.exists()
    finally:
        await finish(runtime)


def test_program_environment_survives_supervisor_parsing() -> None:
    from supervisor.datatypes import dict_of_key_value_pairs

    from sandbox.runtime.local.supervisor_conf import _env_value

    values = {"A": 'x,y "q" 50% c:\\dir', "B": "", "C": "/path with space/p", "D": "it's,here"}
    line = ",".join(f"{k}={_env_value(k, v)}" for k, v in values.items())
    assert dict_of_key_value_pairs(line.replace("%%", "%")) == values  # supervisord expands %% first
    with pytest.raises(RuntimeFailure, match="cannot pass"):
        _env_value("K", "a'b\"c")


def test_supervisord_that_cannot_start_is_one_clear_failure(tmp_path: Path) -> None:
    conf = tmp_path / "supervisord.conf"
    conf.write_text("[supervisord]\nlogfile=/nonexistent-dir/x.log\n[unix_http_server]\nfile=/nonexistent-dir/s.sock\n")
    with pytest.raises(SupervisorError, match="supervisord failed to start"):
        launch_supervisord(conf, tmp_path)


# -- Kafka: one stack, it is the slow one --------------------------------------------------------------


async def test_kafka_up_serves_and_down_leaves_nothing(tmp_path: Path) -> None:
    steps: list[str] = []
    runtime = make_local(tmp_path)
    try:
        started = time.monotonic()
        await runtime.up("kafka", steps.append)
        print(f"\ncold up on kafka: {time.monotonic() - started:.1f}s")
        assert any("Kafka" in step for step in steps)
        services = await eventually(lambda: all_healthy(runtime), timeout=30)
        assert list(services) == ["kafka", "api", *WORKER_SERVICES]
        assert len(services["kafka"].ports) == 2  # client and controller
        async with make_bus(runtime.bus_settings("kafka")) as bus:
            assert set(expected_channels("kafka")) <= set(await bus.channels())
            response = await bus.request("validator", {"text": "on kafka"}, timeout=30)
        assert response.ok and response.worker_id == "validator_worker-1"
        with pytest.raises(RuntimeFailure, match="laddr-sandbox switch redis"):
            await runtime.up("redis")
        pids = pids_of(services) + [await runtime.sup.pid()]

        # the pieces a backend switch is made of: the other broker starts beside
        # the running one, the apps move, the old broker stops
        await runtime.start_broker("redis")
        assert {"kafka", "redis"} <= set(await by_name(runtime))
        await runtime.stop_apps()
        stopped = await by_name(runtime)
        assert all(not stopped[s].replicas for s in WORKER_SERVICES) and not stopped["api"].replicas
        await runtime.start_apps("redis")
        await runtime.stop_broker("kafka")
        services = await eventually(lambda: all_healthy(runtime), timeout=30)
        assert list(services) == ["redis", "api", *WORKER_SERVICES]
        assert await runtime.current_backend() == "redis"
        async with make_bus(runtime.bus_settings("redis")) as bus:
            assert (await bus.request("validator", {"text": "on redis now"}, timeout=30)).ok
        pids += pids_of(services)

        await runtime.down()
        assert alive_of(pids) == [] and marked_pids(runtime.dir.root) == []
    finally:
        await finish(runtime)


async def test_missing_java_is_one_clear_failure(tmp_path: Path) -> None:
    from sandbox.brokers.kafka import find_java

    runtime = make_local(tmp_path)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PATH", str(tmp_path / "empty-bin"))
            mp.delenv("JAVA_HOME", raising=False)
            find_java.cache_clear()
            with pytest.raises(RuntimeFailure, match="Java"):
                await runtime.up("kafka")
        assert marked_pids(runtime.dir.root) == []
    finally:
        find_java.cache_clear()
        await finish(runtime)
