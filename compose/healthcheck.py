"""Container healthcheck for the sandbox image: `api` or `worker`.

api: the HTTP server answers (any status below 500).
worker: the worker process is alive and its broker (one node of it) accepts TCP connections,
so `docker compose ps` shows a worker cut off from its broker as unhealthy.
"""

import os
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request


def api() -> None:
    port = os.environ.get("API_PORT", "8000")
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=3)
    except urllib.error.HTTPError as e:
        if e.code >= 500:
            sys.exit(f"api answered HTTP {e.code}")


def worker() -> None:
    with open("/proc/1/cmdline", "rb") as f:
        cmdline = f.read().replace(b"\0", b" ")
    if b"sandbox.worker" not in cmdline:
        sys.exit("PID 1 is not a sandbox worker")
    if os.environ.get("QUEUE_BACKEND", "redis") == "kafka":
        # a cluster: any node answering will do (the client bootstraps from every one)
        addresses = [a.rpartition(":") for a in os.environ.get("KAFKA_BOOTSTRAP", "kafka:9092").split(",")]
    else:
        url = urllib.parse.urlparse(os.environ.get("REDIS_URL", "redis://redis:6379/0"))
        addresses = [(url.hostname or "redis", ":", url.port or 6379)]
    for host, _, port in addresses:
        try:
            socket.create_connection((host, int(port)), timeout=3 / len(addresses)).close()
            return
        except OSError as exc:
            why = exc
    sys.exit(f"no broker answers: {why}")


if __name__ == "__main__":
    {"api": api, "worker": worker}[sys.argv[1] if len(sys.argv) > 1 else "api"]()
