"""When a sandbox app in a container is ready, before Docker's healthcheck has said so.

Docker runs a container's first healthcheck one `interval` after it starts (Engine 20.10 has no
start_interval), so an app checked every 5 s shows "starting" for 5 s after it serves: most of
what `up` and a switch waited for on the apps. Checking more often costs a process per check
per container for the stack's whole life. So `up` also takes what the app itself says: a
worker's log line "worker <id> serving agent …" (its topic laid out, its agent registered) since
its container started, and the api's health endpoint answering 200 on its published port.
status still shows Docker's own health.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

from sandbox.runtime.base import HOST
from sandbox.runtime.compose.engine import docker_time

WORKER_READY = " serving agent "  # sandbox/worker.py's line once it serves


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
