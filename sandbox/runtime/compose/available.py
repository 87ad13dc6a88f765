"""Whether the compose runtime could run here: an engine (a raw /_ping, no SDK), its files,
its .env and its images (here, or in a registry that answers)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

from sandbox.runtime.base import RuntimeFailure
from sandbox.runtime.compose.config import BROKER_SERVICES, ComposeConfig, compose_file
from sandbox.runtime.compose.engine import Engine


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


def compose_problem(backend: str, cwd: Path | None = None) -> str | None:
    """Why the compose runtime cannot run a stack on `backend` here; None when it can."""
    if compose_file(cwd) is None:
        return "no compose/ folder here or in the installed sandbox"
    if not docker_answers():
        return "no Docker engine answers"
    config = ComposeConfig(root=cwd)
    if not config.env_file.is_file():
        return f"no {config.env_file} (scripts/setup-docker.sh writes it)"
    engine = Engine(config.project, config.root)
    try:
        for var in config.image_vars(backend, [*BROKER_SERVICES[backend], "api"]):
            if why := engine.image_available(config.image(var)):
                return f"image {config.image(var)} ({var}) is {why}"
    except RuntimeFailure as exc:
        return str(exc)
    return None
