"""The Compose stack and the compose runtime on a real Docker engine.

One stack per module (its own folder, so its own project name; its own .env and free host
ports, Kafka UI left out: no image of it can be had without a registry),
built from the local images of sandbox.runtime.compose.images. Nothing is
mocked. Without an engine these tests skip on a developer's machine and FAIL
in CI (CI=true): run scripts/setup-docker.sh first.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from sandbox.brokers.ports import free_ports
from sandbox.config import Settings, write_env
from sandbox.protocol import AGENTS, expected_channels
from sandbox.runtime import docker_answers
from sandbox.runtime.base import RuntimeFailure
from sandbox.runtime.compose.images import COMPOSE_DIR, DEFAULT_IMAGES, ensure_images

pytestmark = pytest.mark.timeout(900)
INPUTS = {"query": "test", "report": "Report on test. Key point: kafka"}


def need_engine() -> None:
    """Skip here, fail in CI: a CI run without Docker must not look green."""
    problem = None
    if not shutil.which("docker"):
        problem = "the docker CLI is not installed"
    elif not docker_answers(timeout=3):
        problem = "no Docker engine answers"
    else:
        try:
            import docker  # noqa: F401
        except ImportError:
            problem = "the docker SDK is not installed (pip install 'laddr-sandbox[docker]')"
    if problem:  # a missing engine is a failure with its reason, never a silent skip
        pytest.fail(f"{problem}: run scripts/setup-docker.sh first", pytrace=False)


def runtime_for(tmp: Path, folder: str, **values: str):
    """A compose runtime for the sandbox folder tmp/folder: its own project name, derived from that folder."""
    from sandbox.runtime.compose import ComposeRuntime

    root = tmp / folder
    root.mkdir(parents=True, exist_ok=True)
    env = root / "compose.env"
    shutil.copyfile(COMPOSE_DIR / ".env.example", env)
    write_env(env, values)
    return ComposeRuntime(Settings(env_file=root / ".env"), env_file=env, cwd=root)


@pytest.fixture(scope="module")
def local_images() -> dict[str, str]:
    need_engine()
    # Cached: seconds when scripts/setup-docker.sh built them already.
    return ensure_images(log=lambda line: None)


@pytest.fixture(scope="module")
def ports() -> dict[str, str]:
    api, kafka, redis = free_ports(3)
    return {"API_HOST_PORT": str(api), "KAFKA_HOST_PORT": str(kafka), "REDIS_HOST_PORT": str(redis)}


@pytest.fixture(scope="module")
async def stack(local_images, ports, tmp_path_factory):
    """The guide's stack on Kafka; torn down (and checked empty) at the end."""
    tmp = tmp_path_factory.mktemp("compose")
    rt = runtime_for(tmp, f"laddrtest{os.getpid()}", COMPOSE_PROFILES="", **local_images, **ports)
    try:
        await rt.up("kafka")
        yield rt
    finally:
        await rt.down()


def api_url(rt) -> str:
    return f"http://127.0.0.1:{rt.bus_settings('kafka').api_port}"


async def run(rt, agent: str, client: httpx.AsyncClient | None = None) -> dict:
    body = {"workflow_name": "compose-test", "initial_task": {"agent": agent, "inputs": INPUTS}}
    async with httpx.AsyncClient(timeout=60) as own:
        reply = await (client or own).post(f"{api_url(rt)}/api/v1/run", json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()


# -- without the engine: the files themselves --------------------------------------
def test_the_compose_files_name_the_same_default_images_as_the_runtime() -> None:
    text = "".join(p.read_text() for p in COMPOSE_DIR.glob("docker-compose*.yml"))
    text += (COMPOSE_DIR / "Dockerfile").read_text().replace("ARG SANDBOX_BASE_IMAGE=", "${SANDBOX_BASE_IMAGE:-") + "}"
    found = dict(re.findall(r"\$\{([A-Z_]+_IMAGE):-([^}\s]+)\}", text))
    assert found == DEFAULT_IMAGES


@pytest.mark.parametrize("cli", [["docker", "compose"], ["docker-compose"]], ids=["v2", "v1"])
@pytest.mark.parametrize("backend", ["docker-compose.kafka.yml", "docker-compose.kraft.yml", "docker-compose.redis.yml"])
def test_every_backend_file_is_valid_for_both_compose_clis(cli: list[str], backend: str) -> None:
    if not shutil.which(cli[0]) or subprocess.run([*cli, "version"], capture_output=True, check=False).returncode:
        need_engine()  # fails in CI, where setup-docker.sh installs both
        pytest.skip(f"{' '.join(cli)} is not installed")
    out = subprocess.run([*cli, "--env-file", str(COMPOSE_DIR / ".env.example"), "-f", "docker-compose.yml", "-f", backend,
                          "config", "-q"], cwd=COMPOSE_DIR, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr


# -- clear one-line failures ------------------------------------------------------------
async def test_an_engine_that_is_down_is_one_clear_line(tmp_path, monkeypatch) -> None:
    pytest.importorskip("docker")
    if not (shutil.which("docker") or shutil.which("docker-compose")):
        pytest.skip("no docker CLI")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    rt = runtime_for(tmp_path, "laddrdown")
    with pytest.raises(RuntimeFailure, match=r"cannot reach the Docker engine at unix://.*no-engine\.sock.*setup-docker"):
        await rt.up("kafka")


async def test_docker_not_installed_is_one_clear_line(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    rt = runtime_for(tmp_path, "laddrnodocker")
    with pytest.raises(RuntimeFailure, match="Docker is not installed: run scripts/setup-docker.sh"):
        await rt.up("redis")


async def test_a_missing_image_is_one_clear_line(tmp_path) -> None:
    need_engine()
    rt = runtime_for(tmp_path, "laddrnoimage", SANDBOX_IMAGE="laddr-sandbox/no-such-image:0", REDIS_IMAGE="laddr-sandbox/no-such-image:0")
    with pytest.raises(RuntimeFailure, match=r"image laddr-sandbox/no-such-image:0 \(REDIS_IMAGE\) is not built: run scripts/setup-docker.sh"):
        await rt.up("redis")


async def test_a_taken_port_is_one_clear_line(tmp_path, local_images) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        rt = runtime_for(tmp_path, "laddrbusy", API_HOST_PORT=str(port), **local_images)
        with pytest.raises(RuntimeFailure, match=rf"port {port} \(API_HOST_PORT\) is taken by another program"):
            await rt.up("redis")
    assert not await rt._containers()


# -- the stack, in the migration guide's order --------------------------------------------
async def test_up_on_kafka_runs_every_service_healthy(stack) -> None:
    assert await stack.current_backend() == "kafka"
    services = {s.name: s for s in await stack.services()}
    assert list(services) == ["zookeeper", "kafka", "api", *(f"{a}_worker" for a in AGENTS)]
    for s in services.values():
        assert (s.state, s.health, s.replicas_label) == ("running", "healthy", "1/1"), s
    assert services["api"].ports == [stack.bus_settings("kafka").api_port]


async def test_the_six_topics_are_listed_from_inside_the_kafka_container(stack) -> None:
    # The guide's check, as written: docker compose exec kafka kafka-topics --list --bootstrap-server localhost:9092
    out = await stack._compose("kafka", "exec", "-T", "kafka", "kafka-topics", "--list", "--bootstrap-server", "localhost:9092")
    topics = set(out.split())
    assert set(expected_channels("kafka")) <= topics, out
    described = await stack._compose("kafka", "exec", "-T", "kafka", "kafka-topics", "--describe", "--topic",
                                     "laddr.tasks.researcher", "--bootstrap-server", "localhost:9092")
    assert "PartitionCount: 6" in described
    # JMX metrics on 9101, for Kafka UI and other JMX clients in the network.
    await stack._compose("kafka", "exec", "-T", "kafka", "bash", "-c", "exec 3<>/dev/tcp/kafka/9101")


async def test_the_guides_kafka_init_job_ran_after_the_apps_and_exited_0(stack) -> None:
    # Started once the apps are ready (nothing waits for it): it may still be running now.
    deadline = asyncio.get_running_loop().time() + 120
    while True:
        [init] = await stack._containers("kafka-init")
        state = init.attrs["State"]
        if state["Status"] == "exited":
            break
        assert asyncio.get_running_loop().time() < deadline, f"kafka-init still {state['Status']} after 120 s"
        await asyncio.sleep(1)
    assert state["ExitCode"] == 0, init.logs(tail=20).decode(errors="replace")
    assert "laddr.responses" in init.logs().decode(errors="replace")  # its closing `kafka-topics --list`


async def test_one_round_trip_per_agent_through_the_api(stack) -> None:
    for agent in AGENTS:
        body = await run(stack, agent)
        assert body["status"] == "success" and body["agent"] == agent, body


async def test_the_host_listener_serves_the_sandbox_on_this_machine(stack) -> None:
    from sandbox.bus import make_bus

    async with make_bus(stack.bus_settings("kafka")) as bus:
        assert await bus.ping()
        assert set(expected_channels("kafka")) <= set(await bus.channels())


async def test_scaled_to_three_researchers_all_three_consume(stack) -> None:
    await stack.scale("researcher_worker", 3)
    status = next(s for s in await stack.services() if s.name == "researcher_worker")
    assert status.replicas_label == "3/3" and [r.name for r in status.replicas] == [f"researcher_worker-{i}" for i in (1, 2, 3)]
    members = ""
    for _ in range(60):  # the group rebalances onto the new members
        members = await stack._compose("kafka", "exec", "-T", "kafka", "kafka-consumer-groups", "--bootstrap-server",
                                       "localhost:9092", "--describe", "--group", "laddr-researcher-workers", "--members")
        if len([ln for ln in members.splitlines() if ln.startswith("laddr-researcher-workers")]) == 3:
            break
        await asyncio.sleep(1)
    else:
        pytest.fail(f"the group never had three members:\n{members}")
    # Ten waves of three: the API's producer puts the tasks of one event-loop turn on one partition and the
    # next turn on the next (sticky, round robin), so ten or more turns reach all six partitions, hence all
    # three replicas. One burst of 30 can fit in two turns and reach two of them, as Kafka's own producer would.
    replies: list = []
    async with httpx.AsyncClient(timeout=60) as client:
        for _ in range(10):
            replies += await asyncio.gather(*(run(stack, "researcher", client) for _ in range(3)))
    assert len({r["worker_id"] for r in replies}) == 3, [r["worker_id"] for r in replies]


async def test_following_a_workers_logs_shows_its_task(stack) -> None:
    lines: list = []
    follower = stack.logs("researcher_worker", tail=5, follow=True)

    async def read() -> None:
        async for line in follower:
            lines.append(line)

    reader = asyncio.create_task(read())
    try:
        body = await run(stack, "researcher")
        wanted = f"task {body['task_id']} received"
        for _ in range(100):
            if any(wanted in ln.text for ln in lines):
                break
            await asyncio.sleep(0.2)
        hit = [ln for ln in lines if wanted in ln.text]
        assert hit, [ln.text for ln in lines[-20:]]
        assert re.fullmatch(r"researcher_worker-[123]", hit[0].replica) and hit[0].timestamp
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await follower.aclose()


async def test_a_killed_replica_comes_back(stack) -> None:
    before = next(s for s in await stack.services() if s.name == "researcher_worker").replicas[1]
    await stack.kill_replica("researcher_worker", 2)
    await stack._wait_ready(["researcher_worker"], lambda _: None, timeout=60)
    after = next(s for s in await stack.services() if s.name == "researcher_worker").replicas[1]
    assert after.state == "running" and after.pid != before.pid


async def test_rollback_to_redis_with_pending_tasks_migrated_then_back(stack) -> None:
    """The guide's rollback, with 20 tasks waiting: every one is answered on Redis; then back to Kafka."""
    from sandbox.bus import make_bus
    from sandbox.switch import PendingTasks, switch_backend

    await stack.scale("researcher_worker", 0)
    async with make_bus(stack.bus_settings("kafka")) as bus:
        pending = [(await bus.publish_task("researcher", {"query": f"pending {i}"})).task_id for i in range(20)]
    with pytest.raises(PendingTasks, match="20 task"):
        await switch_backend(stack, "redis")
    report = await switch_backend(stack, "redis", migrate=True)
    assert report.target == "redis" and report.moved == 20 and await stack.current_backend() == "redis"
    names = [s.name for s in await stack.services()]
    assert "redis" in names and "kafka" not in names and "zookeeper" not in names
    assert "COMPOSE_FILE=docker-compose.yml:docker-compose.redis.yml" in stack.env_file.read_text()
    await stack.scale("researcher_worker", 1)
    async with make_bus(stack.bus_settings("redis")) as bus:
        answers = await asyncio.gather(*[bus.wait_for_response(t, 120) for t in pending])
    assert [a.status for a in answers] == ["success"] * 20  # none lost
    body = await run(stack, "researcher")
    assert body["status"] == "success"

    back = await switch_backend(stack, "kafka")
    assert back.target == "kafka" and await stack.current_backend() == "kafka"
    assert (await run(stack, "coordinator"))["status"] == "success"


async def test_down_leaves_nothing_behind(stack) -> None:
    import docker

    await stack.down()
    client = docker.from_env()
    label = {"label": f"com.docker.compose.project={stack.project}"}
    assert client.containers.list(all=True, filters=label) == []
    assert client.networks.list(filters=label) == []
    assert client.volumes.list(filters=label) == []
    assert await stack.current_backend() is None


# -- Compose v1 (docker-compose 1.29), the fallback -----------------------------------------
async def test_the_v1_cli_runs_the_redis_stack(local_images, tmp_path) -> None:
    if not shutil.which("docker-compose"):
        pytest.skip("docker-compose (v1) is not installed")
    api, redis = free_ports(2)
    rt = runtime_for(tmp_path, f"laddrv1{os.getpid()}", API_HOST_PORT=str(api), REDIS_HOST_PORT=str(redis), **local_images)
    rt.cli.argv = ["docker-compose"]
    try:
        await rt.up("redis")
        assert await rt.current_backend() == "redis"
        body = await run(rt, "writer")
        assert body["status"] == "success"
    finally:
        await rt.down()
    assert not await rt._containers()
