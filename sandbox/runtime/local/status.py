"""The local stack as ServiceStatus rows: supervisord's processes, plus a health probe each."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from sandbox.protocol import BACKENDS
from sandbox.runtime.base import HOST, Replica, ServiceStatus
from sandbox.runtime.local.config import KAFKA_READY_S
from sandbox.runtime.local.kafka_nodes import is_broker_program, port_keys
from sandbox.runtime.local.probes import api_answers, broker_answers
from sandbox.runtime.local.programs import service_of
from sandbox.runtime.local.statedir import State

# a worker younger than this may not have registered yet
HEALTHY_AFTER_S = 2.0
API_PATIENCE_S = 30.0
ALIVE_STATES = ("RUNNING", "STARTING", "BACKOFF")

STATES = {
    "RUNNING": "running",
    "STARTING": "starting",
    "BACKOFF": "restarting",
    "EXITED": "exited",
    "STOPPING": "stopped",
    "STOPPED": "stopped",
    "FATAL": "fatal",
    "UNKNOWN": "exited",
}

Procs = dict[str, dict[str, Any]]


def replicas_of(service: str, programs: Iterable[str]) -> list[tuple[int, str]]:
    """(index, program) of a service among program names, by index."""
    found = [n for n in programs if service_of(n) == service]
    return sorted((1 if n == service else int(n.rpartition("-")[2]), n) for n in found)


def replica(index: int, name: str, info: dict[str, Any], restarts: dict[str, int]) -> Replica:
    running = info["statename"] == "RUNNING"
    return Replica(
        name=name,
        index=index,
        state=STATES.get(info["statename"], "exited"),
        pid=info["pid"] or None,
        uptime_s=float(info["now"] - info["start"]) if running else None,
        restarts=restarts.get(name, 0),
        detail="" if running else info.get("description", ""),
    )


async def service_rows(state: State, procs: Procs, restarts: dict[str, int], backend: str,
                       address: Callable[[str], str], api_port: int, workers: tuple[str, ...]) -> list[ServiceStatus]:
    """Brokers (the other one only while a switch keeps it warm), the api, then each worker service."""
    out: list[ServiceStatus] = []
    for broker in BACKENDS:
        reps = replicas_of(broker, procs)
        if broker != backend and not reps:
            continue
        nodes = state.kafka_brokers if broker == "kafka" else 1
        keys = port_keys(nodes)[0::2] if nodes > 1 else (broker, f"{broker}_controller")
        ports = [state.ports[k] for k in keys if k in state.ports]
        status = ServiceStatus(broker, "broker", desired=nodes if procs else 0, ports=ports)
        status.replicas += [replica(index, name, procs[name], restarts) for index, name in reps]
        out.append(status)
    apps_on = any(not is_broker_program(n) for n in procs)
    api = ServiceStatus("api", "api", desired=int(apps_on), ports=[state.ports["api"]] if "api" in state.ports else [])
    if "api" in procs:
        api.replicas.append(replica(1, "api", procs["api"], restarts))
    out.append(api)
    for service in workers:
        status = ServiceStatus(service, "worker", desired=int(state.scale.get(service, 1)) if apps_on else 0)
        for index, name in replicas_of(service, procs):
            status.replicas.append(replica(index, name, procs[name], restarts))
        out.append(status)
    await asyncio.gather(*(_health(s, address, state.ports.get("api", api_port)) for s in out))
    return out


async def _health(status: ServiceStatus, address: Callable[[str], str], api_port: int) -> None:
    reps = status.replicas
    states = {r.state for r in reps}
    if not reps:
        status.health = "unknown" if status.desired == 0 else "unhealthy"
    elif states & {"fatal", "restarting", "exited"} or not states <= {"running", "starting"}:
        status.health = "unhealthy"
    elif "starting" in states:
        status.health = "starting"
    elif status.kind == "worker":
        status.health = "starting" if any((r.uptime_s or 0) <= HEALTHY_AFTER_S for r in reps) else "healthy"
    else:
        if status.kind == "broker":
            ok, patience = await broker_answers(status.name, address(status.name)), KAFKA_READY_S
        else:
            ok, patience = await api_answers(HOST, api_port), API_PATIENCE_S
        young = (reps[0].uptime_s or 0) < patience
        status.health = "healthy" if ok else "starting" if young else "unhealthy"
