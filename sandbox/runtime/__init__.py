"""Runtimes: the same stack run by Docker Compose, by local processes, or by nobody.

    runtime = make_runtime("auto", settings)     # compose if Docker answers, else local
    runtime = await detect_running(settings)     # whichever has a stack up in this folder
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import sandbox
from sandbox.config import Settings
from sandbox.runtime.base import (
    APP_SERVICES,
    WORKER_SERVICES,
    LogLine,
    Progress,
    Replica,
    Runtime,
    RuntimeFailure,
    ServiceStatus,
    StackNotRunning,
    UnknownService,
)

__all__ = [
    "APP_SERVICES",
    "KINDS",
    "WORKER_SERVICES",
    "LogLine",
    "Progress",
    "Replica",
    "Runtime",
    "RuntimeFailure",
    "ServiceStatus",
    "StackNotRunning",
    "UnknownService",
    "compose_file",
    "detect_running",
    "docker_answers",
    "make_runtime",
]

KINDS = ("auto", "local", "compose", "external")
T = TypeVar("T")


def make_runtime(kind: str, settings: Settings) -> Runtime:
    kind = (kind or "auto").strip().lower()
    if kind not in KINDS:
        raise RuntimeFailure(f"unknown runtime {kind!r}; choose one of {', '.join(KINDS)}")
    if kind == "auto":
        compose = _compose_class() if compose_file() and docker_answers() else None
        return compose(settings) if compose else _local(settings)
    if kind == "local":
        return _local(settings)
    if kind == "external":
        from sandbox.runtime.external import ExternalRuntime

        return ExternalRuntime(settings)
    compose = _compose_class()
    if compose is None:
        raise RuntimeFailure("the compose runtime is not available in this install: use --runtime local")
    return compose(settings)


def detect_running(settings: Settings) -> Runtime | None:
    """The runtime with a stack up for this folder, so status/logs/down need no flag.

    Synchronous, for the CLI to call before it runs anything: local first (a
    state folder and a live supervisord are cheap to check), then Compose when
    Docker answers.
    """
    from sandbox.runtime.local import LocalRuntime

    local = LocalRuntime(settings)
    if local.running_sync():
        return local
    compose = _compose_class() if compose_file() and docker_answers() else None
    if compose is not None:
        runtime = compose(settings)
        if _run_in_thread(runtime.current_backend()) is not None:
            return runtime
    return None


def _run_in_thread(coro: Coroutine[Any, Any, T]) -> T | None:
    """Run a coroutine to the end from sync code, even inside a running event loop."""
    result: list[T | None] = [None]

    def target() -> None:
        try:
            result[0] = asyncio.run(coro)
        except RuntimeFailure:
            result[0] = None

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join()
    return result[0]


def _local(settings: Settings) -> Runtime:
    from sandbox.runtime.local import LocalRuntime

    return LocalRuntime(settings)


def _compose_class() -> type[Runtime] | None:
    # written separately and optional: a missing module means no compose runtime
    try:
        from sandbox.runtime.compose import ComposeRuntime
    except ImportError:
        return None
    return ComposeRuntime


def compose_file(cwd: Path | None = None) -> Path | None:
    """compose/docker-compose.yml of the project here, else of the installed sandbox."""
    for root in ((cwd or Path.cwd()), Path(sandbox.__file__).resolve().parent.parent):
        path = root / "compose" / "docker-compose.yml"
        if path.is_file():
            return path
    return None


def docker_answers(timeout: float = 1.0) -> bool:
    """Whether a Docker engine answers /_ping (DOCKER_HOST or the default socket)."""
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        if host.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: object = host[len("unix://"):]
        elif host.startswith("tcp://"):
            parts = urlsplit(host)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = (parts.hostname, parts.port or 2375)
        else:
            return False  # ssh:// and others: leave it to the compose runtime's own checks
        with sock:
            sock.settimeout(timeout)
            sock.connect(address)
            if host.startswith("tcp://") and os.environ.get("DOCKER_TLS_VERIFY"):
                return True  # TLS: a listening engine is as far as a plain socket can tell
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return sock.recv(64).split(b"\r\n", 1)[0].endswith(b"200 OK")
    except OSError:
        return False
