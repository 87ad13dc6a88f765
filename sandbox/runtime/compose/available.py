"""Whether the compose runtime could run here, asked without the docker SDK (a raw /_ping)."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit


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
