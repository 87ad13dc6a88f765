"""The one Runtime interface: the same stack run by Compose, local processes or nobody.

The CLI and the TUI only talk to this interface (and to the Bus); neither knows
which runtime runs the stack.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import ClassVar

from sandbox.config import ConfigError, Settings, check_backend

# Progress is a line for people: "starting Kafka (JVM) … 4s".
Progress = Callable[[str], None]

# Every port a runtime publishes binds here unless the user says otherwise.
HOST = "127.0.0.1"



def worker_services(settings: Settings) -> tuple[str, ...]:
    """`<agent>_worker` for each of the stack's agents (the examples, or a project's)."""
    return tuple(f"{agent}_worker" for agent in settings.agents)


def app_services(settings: Settings) -> tuple[str, ...]:
    return ("api", *worker_services(settings))


def agent_of_service(service: str) -> str | None:
    return service[: -len("_worker")] if service.endswith("_worker") else None


def no_progress(_: str) -> None:
    return None


class RuntimeFailure(Exception):
    """An expected runtime failure (port taken, no Java, Docker down…), one line for people."""


def runtime_backend(backend: str) -> str:
    """`redis` or `kafka`, else a RuntimeFailure naming the choices."""
    try:
        return check_backend(backend)
    except ConfigError as exc:
        raise RuntimeFailure(str(exc)) from None


def check_scale(service: str, replicas: int, most: int, workers: tuple[str, ...]) -> None:
    """Only worker services scale, and within 0..most replicas."""
    if service not in workers:
        raise RuntimeFailure(f"only worker services scale; {service} runs once (try: laddr-sandbox restart {service})")
    if not 0 <= replicas <= most:
        raise RuntimeFailure(f"replicas must be between 0 and {most}, not {replicas}")


class UnknownService(RuntimeFailure):
    def __init__(self, service: str, known: list[str]):
        super().__init__(f"unknown service {service!r}; known: {', '.join(known)}")


class UnknownReplica(UnknownService):
    """Bad input like an unknown service (exit 2): the replica asked for does not exist."""

    def __init__(self, service: str, replica: int, known: list[int]):
        RuntimeFailure.__init__(self, f"{service} has replica(s) {', '.join(map(str, known)) or 'none running'}, "
                                      f"not {replica}")


class StackNotRunning(RuntimeFailure):
    def __init__(self, runtime: str):
        super().__init__(f"no sandbox stack is running ({runtime} runtime); start one with: laddr-sandbox up")


@dataclass(slots=True)
class Replica:
    name: str  # e.g. researcher_worker-2
    index: int  # 1-based
    state: str  # running | starting | restarting | exited | stopped | fatal
    pid: int | None = None
    uptime_s: float | None = None
    restarts: int = 0
    detail: str = ""


@dataclass(slots=True)
class ServiceStatus:
    name: str
    kind: str  # broker | api | worker | ui
    desired: int
    replicas: list[Replica] = field(default_factory=list)
    health: str = "unknown"  # healthy | unhealthy | starting | unknown
    ports: list[int] = field(default_factory=list)
    note: str = ""  # e.g. a Laddr project's worker on the NoOp LLM, and why

    @property
    def running(self) -> int:
        return sum(1 for r in self.replicas if r.state == "running")

    @property
    def state(self) -> str:
        """Kept apart from health: are the processes there at all?"""
        if self.desired == 0 and not self.replicas:
            return "stopped"
        if self.running == self.desired and self.desired > 0:
            return "running"
        if self.running == 0:
            return "stopped" if all(r.state in ("stopped", "exited") for r in self.replicas) else "starting"
        return "partial"

    @property
    def replicas_label(self) -> str:
        return f"{self.running}/{self.desired}"


@dataclass(slots=True)
class LogLine:
    service: str
    replica: str  # the replica's name, e.g. researcher_worker-2
    text: str
    timestamp: float | None = None


class Runtime(abc.ABC):
    """Runs the stack: a broker (redis or kafka), the api and five worker services."""

    name: ClassVar[str]
    # Whether `up`/`down` start and stop anything (external attaches only).
    manages_processes: ClassVar[bool] = True

    def __init__(self, settings: Settings):
        self.settings = settings

    @property
    def worker_services(self) -> tuple[str, ...]:
        return worker_services(self.settings)

    @property
    def app_services(self) -> tuple[str, ...]:
        return app_services(self.settings)

    # -- the whole stack -----------------------------------------------------
    @abc.abstractmethod
    async def up(self, backend: str, progress: Progress = no_progress) -> None:
        """Start (or attach to) the stack on a backend; returns when workers run."""

    @abc.abstractmethod
    async def down(self, progress: Progress = no_progress) -> None:
        """Stop everything this runtime started; nothing is left running."""

    @abc.abstractmethod
    async def current_backend(self) -> str | None:
        """The backend the running stack uses, or None when no stack runs."""

    @abc.abstractmethod
    def bus_settings(self, backend: str) -> Settings:
        """Settings with the broker addresses a client on this machine should use."""

    # -- services ------------------------------------------------------------
    @abc.abstractmethod
    async def services(self) -> list[ServiceStatus]: ...

    @abc.abstractmethod
    async def scale(self, service: str, replicas: int) -> None: ...

    @abc.abstractmethod
    async def restart(self, service: str) -> None: ...

    @abc.abstractmethod
    async def kill_replica(self, service: str, replica: int) -> None:
        """kill -9 one replica, to watch redelivery happen; the runtime restarts it."""

    @abc.abstractmethod
    def logs(self, service: str, *, tail: int = 100, follow: bool = False) -> AsyncIterator[LogLine]:
        """Lines of every replica of a service, tagged by replica, interleaved."""

    def earlier_logs(self, service: str, *, tail: int = 100) -> AsyncIterator[LogLine]:
        """The lines a replica logged before it was last started again (the local runtime keeps one
        `.log.1` per replica; a restart or a switch rotates it); none where the runtime keeps no such log."""
        return _no_lines()

    # -- pieces the backend switch is made of (sandbox/switch.py) -------------
    @abc.abstractmethod
    async def start_broker(self, backend: str, progress: Progress = no_progress) -> None: ...

    @abc.abstractmethod
    async def stop_broker(self, backend: str, progress: Progress = no_progress) -> None: ...

    @abc.abstractmethod
    async def stop_apps(self, progress: Progress = no_progress) -> None:
        """Stop the api and the workers (their tasks stay on the broker)."""

    @abc.abstractmethod
    async def start_apps(self, backend: str, progress: Progress = no_progress) -> None:
        """Start the api and workers on a backend (recording it as the current one)."""

    def record_backend(self, backend: str) -> None:
        """Write the backend in use where this runtime's users configure it (a no-op by default)."""
        return None


async def _no_lines() -> AsyncIterator[LogLine]:
    return
    yield  # an async generator that yields nothing
