"""The external runtime: brokers and workers someone else runs.

The sandbox starts nothing here. It checks the broker answers (REDIS_URL or
KAFKA_BOOTSTRAP, with the SASL/SSL settings of Settings.kafka_security, all
handled by the bus), creates the topology if it is missing, and shows the
workers that the bus registry and the consumer groups say are there.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from sandbox.bus import Bus, BusError, make_bus
from sandbox.config import Settings
from sandbox.runtime.base import LogLine, Progress, Replica, Runtime, RuntimeFailure, ServiceStatus, no_progress
from sandbox.runtime.base import runtime_backend

NOT_MANAGED = "the external runtime does not manage processes: start and stop them where they run"


class ExternalRuntime(Runtime):
    name = "external"
    manages_processes = False

    def bus_settings(self, backend: str) -> Settings:
        return self.settings.with_backend(runtime_backend(backend))

    def _address(self, backend: str) -> str:
        return self.bus_settings(backend).broker_address

    async def _connect(self, backend: str) -> Bus:
        bus = make_bus(self.bus_settings(backend), backend)
        try:
            await bus.connect()
            if not await bus.ping():
                raise BusError("no answer to ping")
        except BusError as exc:
            await _close(bus)
            raise RuntimeFailure(
                f"cannot reach {backend} at {self._address(backend)} ({exc}): "
                f"check {'KAFKA_BOOTSTRAP and the KAFKA_SECURITY_* settings' if backend == 'kafka' else 'REDIS_URL'}"
            ) from None
        return bus

    # -- the whole stack -----------------------------------------------------------
    async def up(self, backend: str, progress: Progress = no_progress) -> None:
        backend = runtime_backend(backend)
        progress(f"checking {backend} at {self._address(backend)}")
        bus = await self._connect(backend)
        try:
            await bus.ensure_topology(self.settings.agents, self.settings.kafka_partitions)
        except BusError as exc:
            raise RuntimeFailure(f"cannot create the {backend} topology: {exc}") from None
        finally:
            await _close(bus)
        progress(f"{backend} answers; topology in place (workers are run by someone else)")

    async def down(self, progress: Progress = no_progress) -> None:
        raise RuntimeFailure(NOT_MANAGED)

    async def current_backend(self) -> str | None:
        backend = self.settings.queue_backend
        try:
            bus = await self._connect(backend)
        except RuntimeFailure:
            return None
        await _close(bus)
        return backend

    # -- services ------------------------------------------------------------------
    async def services(self) -> list[ServiceStatus]:
        backend = self.settings.queue_backend
        address = self._address(backend)
        broker = ServiceStatus(backend, "broker", desired=1, ports=_ports(backend, address))
        try:
            bus = await self._connect(backend)
        except RuntimeFailure as exc:
            broker.replicas.append(Replica(backend, 1, "exited", detail=str(exc)))
            broker.health = "unhealthy"
            return [broker]
        broker.replicas.append(Replica(backend, 1, "running", detail=address))
        broker.health = "healthy"
        try:
            return [broker, *await self._workers(bus)]
        except BusError as exc:
            broker.health = "unhealthy"
            broker.replicas[0].detail = f"registry unreadable: {exc}"
            return [broker]
        finally:
            await _close(bus)

    async def _workers(self, bus: Bus) -> list[ServiceStatus]:
        registry = await bus.agents()
        agents = self.settings.agents
        names = list(agents) + sorted(a for a in registry if a not in agents)
        # live consumers name the replicas; Redis keeps dead ones, so skip the idle
        stale_ms = self._stale_s() * 1000
        consumers: dict[str, list[str]] = {}
        try:
            stats = await bus.queue_stats(names)
        except Exception:  # a young Kafka may not have a group coordinator yet: the registry still tells
            stats = []
        for queue in stats:
            consumers[queue.agent] = [
                c.name for c in queue.consumers if c.idle_ms is None or c.idle_ms <= stale_ms
            ]
        now = time.time()
        out = []
        for agent in names:
            info = registry.get(agent)
            status = ServiceStatus(f"{agent}_worker", "worker", desired=0)
            if info is None and not consumers.get(agent):
                out.append(status)  # nobody runs it: stopped
                continue
            age = now - info.last_heartbeat if info else None
            fresh = age is not None and age <= self._stale_s()
            state = "running" if fresh else "exited"
            detail = f"last heartbeat {age:.0f}s ago" if age is not None else "not in the registry"
            replica_names = consumers.get(agent) or [info.worker_id or agent if info else agent]
            for i, name in enumerate(replica_names, 1):
                status.replicas.append(Replica(name, i, state, detail=detail))
            status.desired = len(status.replicas)
            status.health = "healthy" if fresh else "unhealthy"
            out.append(status)
        return out

    def _stale_s(self) -> float:
        # three missed heartbeats, and never less than 15 s (other workers may beat slower)
        return max(3 * self.settings.heartbeat_s, 15.0)

    # -- what the external runtime does not do ---------------------------------------
    async def scale(self, service: str, replicas: int) -> None:
        raise RuntimeFailure(NOT_MANAGED)

    async def restart(self, service: str) -> None:
        raise RuntimeFailure(NOT_MANAGED)

    async def kill_replica(self, service: str, replica: int) -> None:
        raise RuntimeFailure(NOT_MANAGED)

    def logs(self, service: str, *, tail: int = 100, follow: bool = False) -> AsyncIterator[LogLine]:
        raise RuntimeFailure("the external runtime cannot read the workers' logs: read them where the workers run")

    async def start_broker(self, backend: str, progress: Progress = no_progress) -> None:
        raise RuntimeFailure(NOT_MANAGED)

    async def stop_broker(self, backend: str, progress: Progress = no_progress) -> None:
        raise RuntimeFailure(NOT_MANAGED)

    async def stop_apps(self, progress: Progress = no_progress) -> None:
        raise RuntimeFailure(NOT_MANAGED)

    async def start_apps(self, backend: str, progress: Progress = no_progress) -> None:
        raise RuntimeFailure(NOT_MANAGED)


def _ports(backend: str, address: str) -> list[int]:
    if backend == "redis":
        try:
            port = urlsplit(address).port
        except ValueError:
            return []
        return [port] if port else []
    ports = []
    for part in address.split(","):
        tail = part.strip().rpartition(":")[2]
        if tail.isdigit():
            ports.append(int(tail))
    return ports


async def _close(bus: Bus) -> None:
    try:
        await bus.close()
    except Exception:  # closing a half-open client must not hide the real error
        pass
