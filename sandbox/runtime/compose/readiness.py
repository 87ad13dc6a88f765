"""When a sandbox app in a container is ready, before Docker's healthcheck has said so.

Docker runs a container's first healthcheck one `interval` after it starts (Engine 20.10 has no
start_interval), so an app checked every 5 s shows "starting" for 5 s after it serves: most of
what `up` and a switch waited for on the apps. Checking more often costs a process per check
per container for the stack's whole life. So `up` also takes what the app itself says: a
worker's log line "worker <id> serving agent …" (its topic laid out, its agent registered) since
its container started, and the api's health endpoint answering 200 on its published port.
status still shows Docker's own health. `wait_ready` is the runtime's wait for a set of services,
by either sign.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

from sandbox.runtime.base import HOST, Progress, RuntimeFailure
from sandbox.runtime.compose.engine import docker_time, health_of, last_line, number

WORKER_READY = " serving agent "  # sandbox/worker.py's line once it serves
POLL_S = 0.25  # between looks at the containers: a wait ends at most this long after the last is ready
CRASH_LOOP_RESTARTS = 3


async def wait_ready(containers: Callable[[str], Awaitable[list[Any]]], says_ready: Callable[[str, Any], Awaitable[bool]],
                     services: list[str], progress: Progress, timeout: float) -> None:
    """Every container of `services` running and healthy, or healthy by its own word (`says_ready`)
    while Docker's first check is still to come; a crash loop or an exited app fails at once."""
    deadline = time.monotonic() + timeout
    said = ""
    while True:
        waiting = []
        for service in services:
            cs = await containers(service)
            if not cs:
                waiting.append(f"{service} (no container)")
            for c in cs:
                state, health, restarts = c.attrs["State"], health_of(c), c.attrs.get("RestartCount", 0)
                if state["Status"] == "running" and (health in (None, "healthy") or
                                                     (health == "starting" and await says_ready(service, c))):
                    continue
                name = f"{service}-{number(c)}"
                if restarts >= CRASH_LOOP_RESTARTS or state["Status"] == "exited":
                    raise RuntimeFailure(f"{name} keeps failing ({state['Status']}, {restarts} restarts): "
                                         f"{last_line(c)}")
                waiting.append(f"{name} ({health or state['Status']})")
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise RuntimeFailure(f"not ready after {timeout:.0f}s: {', '.join(waiting)}")
        line = "waiting for " + ", ".join(waiting[:4]) + (" …" if len(waiting) > 4 else "")
        if line != said:
            progress(line)
            said = line
        await asyncio.sleep(POLL_S)


def worker_said_ready(container: Any) -> bool:
    """The worker in this container wrote its serving line since the container (re)started."""
    started = docker_time(container.attrs["State"].get("StartedAt", ""))
    try:
        text = container.logs(since=started, tail=200) if started else b""
    except Exception:  # noqa: BLE001 - gone meanwhile: not ready, the wait looks again
        return False
    return WORKER_READY.encode() in text


def api_answers(port: int, timeout: float = 1.0) -> bool:
    """The api answers its health endpoint with 200 (503 while it has no broker)."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/api/v1/health", timeout=timeout) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False
