"""The supervisord programs of the local stack: a broker, the api, one per worker replica."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path

import sandbox
from sandbox.brokers.errors import BrokerError
from sandbox.brokers.kafka import KafkaSpec, find_java
from sandbox.brokers.kafka_jars import ensure_kafka_jars
from sandbox.brokers.redis_server import RedisSpec
from sandbox.config import Settings
from sandbox.project import LaddrProject, ProjectError
from sandbox.project.python_env import EnvironmentFailure, project_python, project_python_ready
from sandbox.project.workers import noop_reason, project_env, worker_launch
from sandbox.runtime.base import HOST, Progress, RuntimeFailure, agent_of_service, worker_services
from sandbox.runtime.local.kafka_nodes import KAFKA_STOP_WAIT_S, cluster_programs, jar_progress
from sandbox.runtime.local.supervisor_conf import PRIORITY_API, PRIORITY_BROKER, PRIORITY_WORKER, Program

WORKER_STOP_WAIT_S = 30  # in-flight tasks get this long after SIGTERM, then SIGKILL
API_STOP_WAIT_S = 10
REDIS_STOP_WAIT_S = 15


def replica_name(service: str, index: int) -> str:
    return f"{service}-{index}"


def service_of(program: str) -> str:
    """`researcher_worker-2` -> `researcher_worker`, `kafka-2` -> `kafka`; redis and the api are their own."""
    base, _, n = program.rpartition("-")
    return base if n.isdigit() and (base.endswith("_worker") or base == "kafka") else program


def app_env(settings: Settings, bus: Settings, backend: str) -> dict[str, str]:
    """What the api and the workers need to find the broker and each other."""
    package_root = str(Path(sandbox.__file__).resolve().parent.parent)
    env = {
        "QUEUE_BACKEND": backend,
        "REDIS_URL": bus.redis_url,
        "KAFKA_BOOTSTRAP": bus.kafka_bootstrap,
        "API_HOST": HOST,
        "API_PORT": str(bus.api_port),
        "KAFKA_PARTITIONS": str(settings.kafka_partitions),
        "KAFKA_BROKERS": str(settings.kafka_brokers),
        "WORKER_CONCURRENCY": str(settings.worker_concurrency),
        "LADDR_HEARTBEAT_MS": str(int(settings.heartbeat_s * 1000)),
        "PYTHONUNBUFFERED": "1",  # log lines reach the file as they happen
        # the package runs from wherever this CLI imported it, installed or not
        "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p),
    }
    if settings.env_file:
        env["LADDR_ENV_FILE"] = str(Path(settings.env_file).resolve())
    if settings.agents_dir:
        env["LADDR_AGENTS_DIR"] = str(Path(settings.agents_dir).resolve())
    return env


def app_programs(settings: Settings, bus: Settings, backend: str, scale: dict[str, int], directory: Path) -> list[Program]:
    env = app_env(settings, bus, backend)
    programs = [Program("api", [sys.executable, "-m", "sandbox.api"], env, directory,
                        priority=PRIORITY_API, stopwaitsecs=API_STOP_WAIT_S)]
    launch = project_launcher(settings, env) if settings.project else None
    for service in worker_services(settings):
        agent = agent_of_service(service) or service
        for n in range(1, scale.get(service, 1) + 1):
            name = replica_name(service, n)
            if launch is None:
                argv, program_env, cwd = [sys.executable, "-m", "sandbox.worker", agent], env, directory
            else:
                argv, program_env, cwd = launch(agent)
            programs.append(Program(name, argv, {**program_env, "LADDR_WORKER_ID": name}, cwd,
                                    priority=PRIORITY_WORKER, stopwaitsecs=WORKER_STOP_WAIT_S))
    return programs


def project_launcher(settings: Settings, env: dict[str, str]) -> Callable[[str], tuple[list[str], dict[str, str], Path]]:
    """For a Laddr project: each agent's own worker module, in the project's Python."""
    project = LaddrProject.open(settings.project)
    python = project_python(project)  # made (slowly) before, in prepare_project
    broker = {k: env[k] for k in ("QUEUE_BACKEND", "REDIS_URL", "KAFKA_BOOTSTRAP")}

    def launch(agent: str) -> tuple[list[str], dict[str, str], Path]:
        how = worker_launch(project, project.agent(agent), python, broker)
        return how.argv, how.env, how.cwd

    return launch


async def prepare_project(settings: Settings, progress: Progress) -> None:
    """The project's Python ready (its .venv, or one made from requirements.txt: minutes, once)."""
    if not settings.project:
        return
    try:
        project = LaddrProject.open(settings.project)
        if not project_python_ready(project):
            progress(f"installing {project.requirements_file} into a cached venv (first time only; pip can take minutes)")
        await asyncio.to_thread(project_python, project)
    except (ProjectError, EnvironmentFailure) as exc:
        raise RuntimeFailure(str(exc)) from None


def project_notes(settings: Settings) -> dict[str, str]:
    """What the UI says of each worker service of a Laddr project (its LLM, if the sandbox chose NoOp)."""
    if not settings.project:
        return {}
    project = LaddrProject.open(settings.project)
    env = project_env(project.env_file)
    notes = {}
    for agent in project.agents:
        reason = noop_reason(agent.name, agent.path, {**env, **os.environ})
        notes[agent.worker_service] = "Laddr worker" + (f"; NoOp LLM ({reason})" if reason else "")
    return notes


async def broker_programs(
    backend: str, settings: Settings, data_dir: Path, ports: dict[str, int], directory: Path, progress: Progress
) -> list[Program]:
    """The broker's programs: redis, one `kafka`, or `kafka-1..N` for a KRaft cluster."""
    if backend == "kafka" and settings.kafka_brokers > 1:
        return await cluster_programs(settings, data_dir, ports, directory, progress, env_delta)
    return [await broker_program(backend, settings, data_dir, ports, directory, progress)]


async def broker_program(
    backend: str, settings: Settings, data_dir: Path, ports: dict[str, int], directory: Path, progress: Progress
) -> Program:
    """The broker's program; for Kafka fetches the jars once and formats the storage once."""
    try:
        if backend == "redis":
            argv, env = RedisSpec(data_dir, port=ports["redis"], host=HOST, check_ports=False).prepare()
            return Program("redis", argv, env_delta(env), directory,
                           priority=PRIORITY_BROKER, stopwaitsecs=REDIS_STOP_WAIT_S)
        java = find_java()
        jars = await asyncio.to_thread(ensure_kafka_jars, None, jar_progress(progress))
        spec = KafkaSpec(data_dir, port=ports["kafka"], controller_port=ports["kafka_controller"], host=HOST,
                         partitions=settings.kafka_partitions, check_ports=False)
        if not (spec.log_dir / "meta.properties").exists():
            progress("formatting Kafka storage (first start in this folder)")
        argv, env = await asyncio.to_thread(spec.prepare, java, jars)
    except BrokerError as exc:
        raise RuntimeFailure(str(exc)) from None
    return Program("kafka", argv, env_delta(env), directory,
                   priority=PRIORITY_BROKER, stopwaitsecs=KAFKA_STOP_WAIT_S, startsecs=3)


def env_delta(env: dict[str, str]) -> dict[str, str]:
    """What a spec's environment changes (programs inherit supervisord's): set what
    differs, blank what it drops."""
    delta = {k: v for k, v in env.items() if os.environ.get(k) != v}
    delta.update({k: "" for k in os.environ if k not in env})
    return delta
