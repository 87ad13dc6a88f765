"""The Docker engine through the `docker` SDK: the one module that imports docker.

Containers are found by Compose's labels (com.docker.compose.project / .service
/ .container-number). SDK calls block, so each runs in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sandbox.runtime.base import Progress, Replica, RuntimeFailure

LABEL_PROJECT, LABEL_SERVICE, LABEL_NUMBER = (f"com.docker.compose.{k}" for k in ("project", "service", "container-number"))
KILLED_STOPS_S = 10.0  # how long a killed container may take to be seen stopped
STATES = {"running": "running", "created": "starting", "restarting": "restarting", "exited": "exited",
          "paused": "stopped", "removing": "stopped", "dead": "fatal"}


class Engine:
    """The containers of one Compose project (its name asked of `project` at each call)."""

    def __init__(self, project: Callable[[], str]):
        self.project = project
        self._client: Any = None

    def client(self) -> Any:
        """A connected SDK client, or a RuntimeFailure that says how to get an engine."""
        if self._client is None:
            if not shutil.which("docker") and not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
                raise RuntimeFailure("Docker is not installed: run scripts/setup-docker.sh (or install Docker and Compose)")
            try:
                import docker
            except ImportError:
                raise RuntimeFailure("the compose runtime needs the docker SDK: pip install 'laddr-sandbox[docker]'") from None
            try:
                client = docker.from_env(timeout=30)
                client.ping()
            except Exception as exc:  # noqa: BLE001 - DockerException, requests' ConnectionError…: all mean "no engine"
                host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
                why = str(exc).split(": ", 1)[-1][:120]
                raise RuntimeFailure(f"cannot reach the Docker engine at {host} ({why}): start it, e.g. scripts/setup-docker.sh") from None
            self._client = client
        return self._client

    async def containers(self, service: str | None = None, all_: bool = True) -> list[Any]:
        """This project's containers (of one service), by service and replica number."""
        def query() -> list[Any]:
            labels = [f"{LABEL_PROJECT}={self.project()}"] + ([f"{LABEL_SERVICE}={service}"] if service else [])
            found = self.client().containers.list(all=all_, filters={"label": labels})
            return sorted(found, key=lambda c: (service_of(c), number(c)))

        return await asyncio.to_thread(query)

    async def image_ready(self, image: str, progress: Progress) -> str | None:
        """None when the image is here (pulled if need be), else why not."""
        import docker.errors

        def check() -> str | None:
            client = self.client()
            try:
                client.images.get(image)
                return None
            except docker.errors.ImageNotFound:
                pass
            if image.startswith("laddr-sandbox/"):
                return "not built"
            progress(f"pulling {image}")
            try:
                client.images.pull(image)
                return None
            except docker.errors.DockerException as exc:
                why = " ".join(str(getattr(exc, "explanation", None) or exc).split())
                return f"not here and cannot be pulled ({why[:140]})"

        return await asyncio.to_thread(check)

    async def kill_and_revive(self, container: Any) -> None:
        def run() -> None:
            container.kill(signal="SIGKILL")
            # The engine does not apply a restart policy to a container it was told to kill,
            # so bring it back as the policy would after a crash.
            deadline = time.monotonic() + KILLED_STOPS_S
            while time.monotonic() < deadline:
                container.reload()
                if container.status != "running":
                    break
                time.sleep(0.1)
            container.start()

        await asyncio.to_thread(run)

    async def remove(self, containers: list[Any]) -> None:
        """Force-remove containers with their anonymous volumes."""
        await asyncio.to_thread(lambda: [c.remove(force=True, v=True) for c in containers])


# -- reading a container -------------------------------------------------------------------
def service_of(container: Any) -> str:
    return container.labels.get(LABEL_SERVICE, "")


def number(container: Any) -> int:
    try:
        return int(container.labels.get(LABEL_NUMBER, "1"))
    except ValueError:
        return 1


def env_of(container: Any) -> dict[str, str]:
    return dict(e.split("=", 1) for e in container.attrs.get("Config", {}).get("Env") or [] if "=" in e)


def published(container: Any) -> list[int]:
    ports = (container.attrs.get("NetworkSettings") or {}).get("Ports") or {}
    return sorted({int(b["HostPort"]) for bindings in ports.values() if bindings for b in bindings if b.get("HostPort")})


def health_of(container: Any) -> str | None:
    return (container.attrs["State"].get("Health") or {}).get("Status")


def docker_time(stamp: str) -> float | None:
    """Docker's RFC 3339 nanosecond stamps ("2026-11-27T09:55:18.123456789Z") as epoch seconds."""
    if not stamp or stamp.startswith("0001-"):
        return None
    head, _, frac = stamp.rstrip("Z").partition(".")
    try:
        whole = datetime.fromisoformat(head + "+00:00").timestamp()
    except ValueError:
        return None
    return whole + (float(f"0.{frac[:9]}") if frac.isdigit() else 0.0)


def replica(service: str, c: Any) -> Replica:
    state = c.attrs["State"]
    health = health_of(c)
    status = STATES.get(state["Status"], "exited")
    if status == "running" and health == "starting":
        status = "starting"
    started = docker_time(state.get("StartedAt", ""))
    detail = f"health: {health}" if health and health != "healthy" else ""
    if state["Status"] == "exited":
        detail = f"exit code {state.get('ExitCode')}"
    return Replica(
        name=f"{service}-{number(c)}", index=number(c), state=status, pid=state.get("Pid") or None,
        uptime_s=time.time() - started if started and state["Status"] == "running" else None,
        restarts=c.attrs.get("RestartCount", 0), detail=detail,
    )


def service_health(containers: list[Any]) -> str:
    if not containers:
        return "unknown"
    states = [(health_of(c), c.attrs["State"]["Status"]) for c in containers]
    if any(s != "running" for _, s in states) or any(h == "unhealthy" for h, _ in states):
        return "unhealthy"
    if any(h == "starting" for h, _ in states):
        return "starting"
    return "healthy" if all(h == "healthy" for h, _ in states) else "unknown"


def last_line(container: Any) -> str:
    with contextlib.suppress(Exception):
        lines = container.logs(tail=5).decode(errors="replace").strip().splitlines()
        if lines:
            return lines[-1][:200]
    return "no output"
