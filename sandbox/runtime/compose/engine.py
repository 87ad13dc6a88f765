"""The Docker engine through the `docker` SDK: the one module that imports docker.

Containers are found by Compose's labels (com.docker.compose.project / .service
/ .container-number). SDK calls block, so each runs in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from sandbox.runtime.base import Progress, Replica, RuntimeFailure
from sandbox.runtime.compose.config import ROOT_LABEL

LABEL_PROJECT, LABEL_SERVICE, LABEL_NUMBER = (f"com.docker.compose.{k}" for k in ("project", "service", "container-number"))
# Docker names an anonymous volume (a VOLUME of the image, made for one container) with 64 hex digits.
ANONYMOUS = re.compile(r"[0-9a-f]{64}")
KILLED_STOPS_S = 10.0  # how long a killed container may take to be seen stopped
STATES = {"running": "running", "created": "starting", "restarting": "restarting", "exited": "exited",
          "paused": "stopped", "removing": "stopped", "dead": "fatal"}


class Engine:
    """The containers of one Compose project that this sandbox folder (`root`) started."""

    def __init__(self, project: str, root: Path):
        self.project = project
        self.root = str(root)
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

    def _project_containers(self, service: str | None, all_: bool) -> list[Any]:
        labels = [f"{LABEL_PROJECT}={self.project}"] + ([f"{LABEL_SERVICE}={service}"] if service else [])
        found = self.client().containers.list(all=all_, filters={"label": labels})
        return sorted(found, key=lambda c: (service_of(c), number(c)))

    async def containers(self, service: str | None = None, all_: bool = True) -> list[Any]:
        """This folder's containers of the project (of one service), by service and replica number.

        A container without the folder label (started by a plain `docker compose` here) counts as ours."""
        found = await asyncio.to_thread(self._project_containers, service, all_)
        return [c for c in found if root_of(c) in ("", self.root)]

    async def other_roots(self) -> set[str]:
        """Folders other than ours whose containers use this project name (a pinned, shared name)."""
        found = await asyncio.to_thread(self._project_containers, None, True)
        return {root_of(c) for c in found} - {"", self.root}

    async def networks(self) -> list[str]:
        found = await asyncio.to_thread(
            lambda: self.client().networks.list(filters={"label": f"{LABEL_PROJECT}={self.project}"}))
        return sorted(n.name for n in found)

    def _here(self, image: str) -> str | None:
        """None: the image is here; "not built": the sandbox's own, no registry has it; "": ask a registry."""
        import docker.errors

        try:
            self.client().images.get(image)
            return None
        except docker.errors.ImageNotFound:
            return "not built" if image.startswith("laddr-sandbox/") else ""

    async def image_ready(self, image: str, progress: Progress) -> str | None:
        """None when the image is here (pulled if need be), else why not."""
        import docker.errors

        def check() -> str | None:
            if (why := self._here(image)) != "":
                return why
            progress(f"pulling {image}")
            try:
                self.client().images.pull(image)
                return None
            except docker.errors.DockerException as exc:
                return _unpullable(exc)

        return await asyncio.to_thread(check)

    def image_available(self, image: str) -> str | None:
        """None when the image is here or its registry has it (nothing is pulled), else why not."""
        import docker.errors

        if (why := self._here(image)) != "":
            return why
        try:
            self.client().images.get_registry_data(image)
            return None
        except docker.errors.DockerException as exc:
            return _unpullable(exc)

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

    async def made_volumes(self, containers: list[Any]) -> list[str]:
        """The volumes mounted in these containers that were made for them: anonymous ones, and
        named ones Compose created for this project. Another one (external, the user's) is not."""
        import docker.errors

        def run() -> list[str]:
            out = []
            for name in dict.fromkeys(v for c in containers for v in volumes_of(c)):
                try:
                    labels = self.client().volumes.get(name).attrs.get("Labels") or {}
                except docker.errors.NotFound:
                    continue
                if labels.get(LABEL_PROJECT) == self.project or (not labels and ANONYMOUS.fullmatch(name)):
                    out.append(name)
            return out

        return await asyncio.to_thread(run)

    async def remove_volumes(self, names: list[str]) -> list[str]:
        """Remove these volumes (gone already is fine); returns the ones still in use, left alone."""
        import docker.errors

        def run() -> list[str]:
            in_use = []
            for name in names:
                try:
                    self.client().volumes.get(name).remove()
                except docker.errors.NotFound:
                    pass
                except docker.errors.APIError:
                    in_use.append(name)
            return in_use

        return await asyncio.to_thread(run)


def _unpullable(exc: Exception) -> str:
    why = " ".join(str(getattr(exc, "explanation", None) or exc).split())
    return f"not here and cannot be pulled ({why[:140]})"


# -- reading a container -------------------------------------------------------------------
def service_of(container: Any) -> str:
    return container.labels.get(LABEL_SERVICE, "")


def root_of(container: Any) -> str:
    """The sandbox folder that started a container ("" when a plain `docker compose` did)."""
    return container.labels.get(ROOT_LABEL, "")


def volumes_of(container: Any) -> list[str]:
    """The volumes (named or anonymous) mounted in a container; bind mounts are the user's."""
    return [m["Name"] for m in container.attrs.get("Mounts") or [] if m.get("Type") == "volume" and m.get("Name")]


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


def replica(service: str, c: Any, index: int | None = None) -> Replica:
    """A container as a replica of `service`, numbered `index` (default: Compose's container number)."""
    index = index or number(c)
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
        name=f"{service}-{index}", index=index, state=status, pid=state.get("Pid") or None,
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
