"""What the user pinned (`.env`, environment) and what the local runtime chose (state.json).

Ports: a loopback address the user set on purpose (REDIS_URL, KAFKA_BOOTSTRAP,
API_PORT) is used as it is, and a taken one is an error; every other port is
picked free once per state folder and kept, so two sandboxes on one machine
never collide and a sandbox keeps its addresses between runs.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from urllib.parse import urlsplit

from sandbox.brokers.ports import free_ports, port_is_free
from sandbox.config import ConfigError, Settings, read_sandbox_env
from sandbox.runtime.base import HOST, RuntimeFailure, worker_services
from sandbox.runtime.local.kafka_nodes import port_owner
from sandbox.runtime.local.statedir import State

MAX_REPLICAS = 64
# how long each part may take to answer after it starts
REDIS_READY_S = 30.0
KAFKA_READY_S = 180.0  # a cold JVM on two busy cores
APPS_READY_S = {"redis": 60.0, "kafka": 120.0}


def _is_loopback(host: str | None) -> bool:
    return host in ("127.0.0.1", "localhost", "::1", "0.0.0.0")


class LocalConfig:
    def __init__(self, settings: Settings, project_dir: Path):
        self.settings = settings
        self.project_dir = project_dir

    def env_values(self) -> dict[str, str]:
        """`.env` overlaid by the environment: only to see what the user pinned."""
        path = self.settings.env_file or self.project_dir / ".env"
        try:
            return {**read_sandbox_env(Path(path))[0], **os.environ}
        except ConfigError as exc:
            raise RuntimeFailure(f"{exc}: fix that line of the .env file and retry") from None

    def pinned_ports(self) -> dict[str, tuple[int, str]]:
        """Ports the user set on purpose (loopback addresses only), with the setting's name."""
        values = self.env_values()
        pinned: dict[str, tuple[int, str]] = {}
        if url := values.get("REDIS_URL"):
            with contextlib.suppress(ValueError):  # a bad port in the URL: not pinned
                parts = urlsplit(url)
                if _is_loopback(parts.hostname) and parts.port:
                    pinned["redis"] = (parts.port, "REDIS_URL")
        if (bootstrap := values.get("KAFKA_BOOTSTRAP")) and "," not in bootstrap:
            host, _, port = bootstrap.strip().rpartition(":")
            if _is_loopback(host.strip("[]")) and port.isdigit():
                pinned["kafka"] = (int(port), "KAFKA_BOOTSTRAP")
        if values.get("API_PORT"):
            pinned["api"] = (self.settings.api_port, "API_PORT")
        return pinned

    def choose_ports(self, state: State, keys: tuple[str, ...], running: set[str], nodes: int = 1) -> dict[str, int]:
        """Ports for `keys` into state.ports: pinned ones as set, ours as before unless now taken.

        `running` names our programs that hold their ports right now; `nodes`, the Kafka's.
        """
        pinned = self.pinned_ports()
        ports = dict(state.ports)
        for key in keys:
            if port_owner(key, nodes) in running:
                continue
            if key in pinned:
                port, setting = pinned[key]
                if not port_is_free(port, HOST):
                    raise RuntimeFailure(
                        f"port {port} ({setting}) is taken by another program: stop it, or change or remove "
                        f"{setting} in .env so the sandbox picks a free port"
                    )
                ports[key] = port
            elif key not in ports or not port_is_free(ports[key], HOST):
                taken = {v for k, v in ports.items() if k != key}
                ports[key] = next(p for p in free_ports(len(taken) + 1, HOST) if p not in taken)
        state.ports = ports
        return ports

    def desired_scale(self, state: State) -> dict[str, int]:
        """SCALE_<AGENT>_WORKER pinned in .env/env wins; else the last `scale`; else 1."""
        values = self.env_values()
        scale = {}
        for service in worker_services(self.settings):
            key = f"SCALE_{service.upper()}"
            raw = values.get(key)
            if raw:
                try:
                    scale[service] = max(0, min(MAX_REPLICAS, int(raw)))
                except ValueError:
                    raise RuntimeFailure(f"{key} must be a whole number, not {raw!r}: fix it in .env") from None
            else:
                scale[service] = int(state.scale.get(service, 1))
        return scale
