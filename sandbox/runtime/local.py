"""The local runtime: the stack as local processes under supervisord.

A real redis-server or a real Kafka (KRaft, from the cached jars), the api and
one supervisord program per worker replica (`researcher_worker-2`), all bound
to 127.0.0.1 on ports chosen once per state folder. supervisord runs as a
daemon, so the stack outlives the CLI; every later command (from any shell)
finds it through `.laddr-sandbox/` and talks to it over its unix socket.

One program per replica rather than one program with `numprocs`: supervisord
cannot change a group's numprocs in place, so scaling 3 -> 4 would restart the
three running replicas; with a program each, scaling adds or removes only the
replicas that change.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sandbox.brokers.errors import BrokerError
from sandbox.brokers.kafka import wait_kafka_ready
from sandbox.brokers.redis_server import wait_redis_ready
from sandbox.bus import BusError, make_bus
from sandbox.config import ConfigError, Settings, check_backend, write_env
from sandbox.protocol import AGENTS, BACKENDS
from sandbox.runtime import procscan
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
    no_progress,
)
from sandbox.runtime.local_config import HOST, MAX_REPLICAS, LocalConfig
from sandbox.runtime.local_programs import app_programs, broker_program, replica_name, service_of
from sandbox.runtime.logfollow import follow_files
from sandbox.runtime.probes import api_answers, broker_answers
from sandbox.runtime.readiness import Readiness, last_log_line
from sandbox.runtime.statedir import State, StateDir, state_dir
from sandbox.runtime.supervisor_client import (
    Supervisor,
    SupervisorError,
    launch_supervisord,
    read_pid,
    restart_counts,
)
from sandbox.runtime.supervisor_conf import (
    Program,
    configured_programs,
    program_file,
    remove_program,
    write_program,
    write_supervisord,
)

REDIS_READY_S = 30.0
KAFKA_READY_S = 180.0  # a cold JVM on two busy cores
APPS_READY_S = {"redis": 60.0, "kafka": 120.0}
HEALTHY_AFTER_S = 2.0
ALIVE_STATES = ("RUNNING", "STARTING", "BACKOFF")

_STATES = {
    "RUNNING": "running",
    "STARTING": "starting",
    "BACKOFF": "restarting",
    "EXITED": "exited",
    "STOPPING": "stopped",
    "STOPPED": "stopped",
    "FATAL": "fatal",
    "UNKNOWN": "exited",
}


class LocalRuntime(Runtime):
    name = "local"

    def __init__(self, settings: Settings, cwd: Path | None = None):
        super().__init__(settings)
        self.project_dir = (cwd or Path.cwd()).resolve()
        self.dir = StateDir(state_dir(self.project_dir))
        self.config = LocalConfig(settings, self.project_dir)
        self.sup = Supervisor(self.dir.socket)
        self._lock_depth = 0

    # -- addresses ------------------------------------------------------------------
    def bus_settings(self, backend: str) -> Settings:
        ports = self.dir.load().ports
        s = self.settings
        redis_port = ports.get("redis") or urlsplit(s.redis_url).port or 6379
        kafka_port = ports.get("kafka") or int(s.kafka_bootstrap.split(",")[0].rpartition(":")[2])
        return replace(
            s,
            queue_backend=_backend(backend),
            redis_url=f"redis://{HOST}:{redis_port}/0",
            kafka_bootstrap=f"{HOST}:{kafka_port}",
            api_host=HOST,
            api_port=ports.get("api") or s.api_port,
        )

    def _address(self, backend: str) -> str:
        return self.bus_settings(backend).broker_address

    # -- one changer per state folder -------------------------------------------------
    @contextlib.asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        """Serialise changes from several shells; re-entrant within this object (up -> start_broker)."""
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        try:
            self.dir.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RuntimeFailure(
                f"cannot create the state folder {self.dir.root} ({exc.strerror or exc}): "
                "set LADDR_STATE_DIR to a writable folder"
            ) from None
        try:
            async with self.dir.locked():
                self._lock_depth = 1
                try:
                    yield
                finally:
                    self._lock_depth = 0
        except TimeoutError as exc:
            raise RuntimeFailure(f"{exc}; wait for it to finish") from None

    # -- supervisord ----------------------------------------------------------------
    async def _supervisord_up(self, progress: Progress) -> None:
        """Start supervisord (with no programs yet) unless it runs."""
        if await self.sup.alive():
            return
        leftovers = procscan.marked_pids(self.dir.root)
        if leftovers:  # a supervisord that died hard leaves its programs behind
            progress(f"ending {len(leftovers)} process(es) left by an earlier run")
            await asyncio.to_thread(procscan.terminate, leftovers)
        try:
            self.dir.create()
            for name in configured_programs(self.dir):
                remove_program(self.dir, name)  # a cold start decides every program afresh
            write_supervisord(self.dir, self.project_dir)
            self.dir.socket.unlink(missing_ok=True)
        except OSError as exc:
            raise RuntimeFailure(
                f"cannot write the state folder {self.dir.root} ({exc.strerror or exc}): "
                "make it writable or set LADDR_STATE_DIR to another folder"
            ) from None
        progress("starting supervisord")
        # the marker lets `down` find every process of this folder even if supervisord dies
        env = {**os.environ, procscan.MARKER: str(self.dir.root)}
        await asyncio.to_thread(launch_supervisord, self.dir.conf, self.project_dir, env)
        deadline = time.monotonic() + 15
        while not await self.sup.alive():
            if time.monotonic() > deadline:
                raise RuntimeFailure(f"supervisord did not answer on {self.dir.socket}: see {self.dir.supervisord_log}")
            await asyncio.sleep(0.05)

    async def _require_running(self) -> State:
        if not await self.sup.alive():
            raise StackNotRunning(self.name)
        return self.dir.load()

    async def _running_programs(self) -> set[str]:
        return {n for n, i in (await self.sup.processes()).items() if i["statename"] in ALIVE_STATES}

    def _rotate_old_log(self, name: str) -> None:
        # A replica that comes back (scale down, then up) starts a fresh log, as a
        # new container would; the previous one stays as .1 (supervisor's naming).
        log = self.dir.log_file(name)
        if log.exists() and not program_file(self.dir, name).exists():
            os.replace(log, log.with_name(log.name + ".1"))

    async def _apply(self, programs: list[Program], remove: list[str] = ()) -> None:
        """Write/remove these programs' files and make supervisord match, others untouched."""
        for name in remove:
            remove_program(self.dir, name)
        for program in programs:
            self._rotate_old_log(program.name)
            write_program(self.dir, program)
        await self.sup.apply({p.name for p in programs} | set(remove))
        # unchanged programs that are down (after a stop, or FATAL) start again
        procs = await self.sup.processes()
        await self.sup.start([p.name for p in programs
                              if procs.get(p.name, {}).get("statename") in ("STOPPED", "EXITED", "FATAL")])

    # -- the whole stack --------------------------------------------------------------
    async def up(self, backend: str, progress: Progress = no_progress) -> None:
        backend = _backend(backend)
        self.config.env_values()  # a malformed .env fails here, before anything starts
        async with self._locked():
            state = self.dir.load()
            if await self.sup.alive():
                if state.backend and state.backend != backend:
                    raise RuntimeFailure(
                        f"the sandbox in {self.project_dir} runs on {state.backend}; "
                        f"to move it to {backend} use: laddr-sandbox switch {backend}"
                    )
                progress(f"attaching to the running stack ({backend})")
                await self.start_broker(backend, progress)
                await self.start_apps(backend, progress)
                return
            started = time.monotonic()
            try:
                await self._supervisord_up(progress)
                state = self.dir.load()
                state.project_dir, state.started_at = str(self.project_dir), time.time()
                self.dir.save(state)
                await self.start_broker(backend, progress)
            except BaseException:
                # nothing useful runs without a broker: leave no half stack behind
                with contextlib.suppress(Exception):
                    await self._teardown(no_progress)
                raise
            # a worker that fails from here on stays up for `status` and `logs` to explain
            await self.start_apps(backend, progress)
            progress(f"stack up on {backend} in {time.monotonic() - started:.1f}s")

    async def down(self, progress: Progress = no_progress) -> None:
        if not self.dir.root.exists():
            progress("no sandbox stack here")  # and no state folder to create for it
            return
        async with self._locked():
            await self._teardown(progress)

    async def _teardown(self, progress: Progress) -> None:
        pids: list[int] = []
        if await self.sup.alive():
            procs = await self.sup.processes()
            pids = [info["pid"] for info in procs.values() if info["pid"]]
            with contextlib.suppress(OSError, SupervisorError):
                pids.append(await self.sup.pid())
            # in parallel, apps first: supervisord's own shutdown goes one group at a time
            apps = [n for n in procs if n not in BACKENDS]
            if apps:
                progress("stopping the workers and the api")
                await self.sup.stop(apps)
            brokers = [n for n in procs if n in BACKENDS]
            if brokers:
                progress(f"stopping {', '.join(brokers)}")
                await self.sup.stop(brokers)
            progress("stopping supervisord")
            await self.sup.shutdown()
        elif pid := read_pid(self.dir.pidfile):
            pids.append(pid)
        pids += procscan.marked_pids(self.dir.root)
        deadline = time.monotonic() + 30
        while procscan.alive_of(pids) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        survivors = await asyncio.to_thread(procscan.terminate, procscan.alive_of(pids), 5.0)
        if survivors:
            raise RuntimeFailure(f"processes {survivors} did not exit: end them with kill -9 {' '.join(map(str, survivors))}")
        if self.dir.state_file.exists():
            state = self.dir.load()
            state.started_at = None
            self.dir.save(state)
        progress("stack down")

    def running_sync(self) -> bool:
        """Whether this folder's supervisord answers (for callers outside an event loop)."""
        return self.sup.alive_sync()

    async def current_backend(self) -> str | None:
        if not await self.sup.alive():
            return None
        state = self.dir.load()
        if state.backend:
            return state.backend
        procs = await self.sup.processes()
        return next((b for b in BACKENDS if b in procs), None)

    # -- broker -----------------------------------------------------------------------------
    async def start_broker(self, backend: str, progress: Progress = no_progress) -> None:
        """Start a broker (beside the other one, if that runs) and make its topology."""
        backend = _backend(backend)
        async with self._locked():
            await self._supervisord_up(progress)
            state = self.dir.load()
            running = await self._running_programs()
            keys = ("redis",) if backend == "redis" else ("kafka", "kafka_controller")
            ports = self.config.choose_ports(state, keys, running)
            self.dir.save(state)
            if backend not in running or not await broker_answers(backend, self._address(backend)):
                program = await broker_program(backend, self.settings, self.dir.data / backend, ports,
                                               self.project_dir, progress)
                progress(f"starting {'Kafka (JVM)' if backend == 'kafka' else 'Redis'} on {HOST}:{ports[backend]}")
                await self._apply([program])
                await self._wait_broker(backend, progress)
            await self._ensure_topology(backend)

    async def _wait_broker(self, backend: str, progress: Progress) -> None:
        address = self._address(backend)
        started = time.monotonic()

        def alive() -> bool:  # between probes: a crash-looping broker fails fast
            try:
                return self.sup.call_sync("getProcessInfo", backend)["statename"] not in ("FATAL", "STOPPED", "EXITED")
            except Exception:
                return False

        try:
            if backend == "redis":
                await wait_redis_ready(address, REDIS_READY_S)
            else:
                await wait_kafka_ready(address, KAFKA_READY_S, alive=alive,
                                       progress=lambda s: progress(f"starting Kafka (JVM)… {s:.0f}s"))
        except BrokerError as exc:
            why = last_log_line(self.dir.log_file(backend)) or exc
            raise RuntimeFailure(f"{backend} did not start: {why}; see {self.dir.log_file(backend)}") from None
        progress(f"{backend} ready on {address} ({time.monotonic() - started:.1f}s)")

    async def _ensure_topology(self, backend: str) -> None:
        try:
            async with make_bus(self.bus_settings(backend), backend) as bus:
                await bus.ensure_topology(AGENTS, self.settings.kafka_partitions)
        except BusError as exc:
            raise RuntimeFailure(f"cannot create the {backend} topology: {exc}") from None

    async def stop_broker(self, backend: str, progress: Progress = no_progress) -> None:
        backend = _backend(backend)
        async with self._locked():
            await self._require_running()
            progress(f"stopping {backend}")
            await self._apply([], remove=[backend])

    # -- apps -------------------------------------------------------------------------------
    async def stop_apps(self, progress: Progress = no_progress) -> None:
        async with self._locked():
            await self._require_running()
            progress("stopping the workers and the api")
            await self._apply([], remove=[n for n in configured_programs(self.dir) if n not in BACKENDS])

    def record_backend(self, backend: str) -> None:
        """QUEUE_BACKEND and the broker's address go to the project's `.env`, as the guide does by hand."""
        settings = self.bus_settings(backend)
        key, address = ("KAFKA_BOOTSTRAP", settings.kafka_bootstrap) if backend == "kafka" else ("REDIS_URL", settings.redis_url)
        try:
            write_env(Path(self.settings.env_file or self.project_dir / ".env"), {"QUEUE_BACKEND": backend, key: address})
        except ConfigError as exc:
            raise RuntimeFailure(f"{exc}: fix that line of the .env file and retry") from None

    async def start_apps(self, backend: str, progress: Progress = no_progress) -> None:
        """Start (or bring in line) the api and every worker replica on a backend, and wait for them."""
        backend = _backend(backend)
        async with self._locked():
            state = await self._require_running()
            if not await broker_answers(backend, self._address(backend)):
                raise RuntimeFailure(f"{backend} is not running here: start it first (laddr-sandbox up {backend})")
            self.config.choose_ports(state, ("api",), await self._running_programs())
            state.backend, state.scale = backend, self.config.desired_scale(state)
            self.dir.save(state)
            programs = app_programs(self.settings, self.bus_settings(backend), backend, state.scale, self.project_dir)
            wanted = {p.name for p in programs}
            extra = [n for n in configured_programs(self.dir) if n not in wanted and n not in BACKENDS]
            progress(f"starting the api and {sum(state.scale.values())} worker(s) on {backend}")
            await self._apply(programs, remove=extra)
            await self._wait_ready(backend, [p.name for p in programs], progress)

    async def _wait_ready(self, backend: str, names: list[str], progress: Progress) -> None:
        bus_settings = self.bus_settings(backend)
        try:
            async with make_bus(bus_settings, backend) as bus:
                readiness = Readiness(self.sup, bus, self.dir.log_file, self.settings.heartbeat_s)
                await readiness.wait(names, lambda: api_answers(HOST, bus_settings.api_port),
                                     APPS_READY_S[backend], progress)
        except BusError as exc:
            raise RuntimeFailure(f"cannot reach {backend} to watch the workers register: {exc}") from None

    # -- services -----------------------------------------------------------------------------
    def _replicas_of(self, service: str, programs: Any) -> list[tuple[int, str]]:
        """(index, program) of a service among program names, by index."""
        if service not in WORKER_SERVICES:
            return [(1, service)] if service in programs else []
        return sorted((int(n.rpartition("-")[2]), n) for n in programs if service_of(n) == service and n != service)

    def _replica(self, index: int, name: str, info: dict[str, Any], restarts: dict[str, int]) -> Replica:
        running = info["statename"] == "RUNNING"
        return Replica(
            name=name,
            index=index,
            state=_STATES.get(info["statename"], "exited"),
            pid=info["pid"] or None,
            uptime_s=float(info["now"] - info["start"]) if running else None,
            restarts=restarts.get(name, 0),
            detail="" if running else info.get("description", ""),
        )

    async def services(self) -> list[ServiceStatus]:
        state = self.dir.load()
        procs = await self.sup.processes() if await self.sup.alive() else {}
        restarts = await asyncio.to_thread(restart_counts, self.dir.supervisord_log) if procs else {}
        backend = state.backend or self.settings.queue_backend
        out: list[ServiceStatus] = []
        for broker in BACKENDS:
            if broker != backend and broker not in procs:
                continue  # the other broker shows only while it is kept warm (a switch)
            ports = [state.ports[k] for k in (broker, f"{broker}_controller") if k in state.ports]
            status = ServiceStatus(broker, "broker", desired=1 if procs else 0, ports=ports)
            if broker in procs:
                status.replicas.append(self._replica(1, broker, procs[broker], restarts))
            out.append(status)
        apps_on = any(n not in BACKENDS for n in procs)
        api = ServiceStatus("api", "api", desired=int(apps_on), ports=[state.ports["api"]] if "api" in state.ports else [])
        if "api" in procs:
            api.replicas.append(self._replica(1, "api", procs["api"], restarts))
        out.append(api)
        for service in WORKER_SERVICES:
            status = ServiceStatus(service, "worker", desired=int(state.scale.get(service, 1)) if apps_on else 0)
            for index, name in self._replicas_of(service, procs):
                status.replicas.append(self._replica(index, name, procs[name], restarts))
            out.append(status)
        await asyncio.gather(*(self._health(s, state) for s in out))
        return out

    async def _health(self, status: ServiceStatus, state: State) -> None:
        reps = status.replicas
        states = {r.state for r in reps}
        if not reps:
            status.health = "unknown" if status.desired == 0 else "unhealthy"
        elif states & {"fatal", "restarting", "exited"} or not states <= {"running", "starting"}:
            status.health = "unhealthy"
        elif "starting" in states:
            status.health = "starting"
        elif status.kind == "worker":
            status.health = "starting" if any((r.uptime_s or 0) <= HEALTHY_AFTER_S for r in reps) else "healthy"
        else:
            if status.kind == "broker":
                ok, patience = await broker_answers(status.name, self._address(status.name)), KAFKA_READY_S
            else:
                ok, patience = await api_answers(HOST, state.ports.get("api", self.settings.api_port)), 30.0
            young = (reps[0].uptime_s or 0) < patience
            status.health = "healthy" if ok else "starting" if young else "unhealthy"

    def _check_service(self, service: str) -> None:
        known = [*BACKENDS, *APP_SERVICES]
        if service not in known:
            raise UnknownService(service, known)

    # -- actions on one service ------------------------------------------------------------------
    async def scale(self, service: str, replicas: int) -> None:
        self._check_service(service)
        if service not in WORKER_SERVICES:
            raise RuntimeFailure(f"only worker services scale; {service} runs once (try: laddr-sandbox restart {service})")
        if not 0 <= replicas <= MAX_REPLICAS:
            raise RuntimeFailure(f"replicas must be between 0 and {MAX_REPLICAS}, not {replicas}")
        async with self._locked():
            state = await self._require_running()
            if not state.backend:
                raise RuntimeFailure("the workers are not running: start them with laddr-sandbox up")
            state.scale = {**self.config.desired_scale(state), service: replicas}
            self.dir.save(state)
            everything = app_programs(self.settings, self.bus_settings(state.backend), state.backend,
                                      state.scale, self.project_dir)
            programs = [p for p in everything if service_of(p.name) == service]
            current = [n for _, n in self._replicas_of(service, configured_programs(self.dir))]
            added = [p.name for p in programs if p.name not in current]
            await self._apply(programs, remove=[n for n in current if n not in {p.name for p in programs}])
            if added:
                await self._wait_ready(state.backend, added, no_progress)

    async def restart(self, service: str) -> None:
        self._check_service(service)
        async with self._locked():
            state = await self._require_running()
            names = [n for _, n in self._replicas_of(service, await self.sup.processes())]
            if not names:
                raise RuntimeFailure(f"{service} is not running here; start the stack with laddr-sandbox up")
            await self.sup.stop(names)
            await self.sup.start(names)
            if service in BACKENDS:
                await self._wait_broker(service, no_progress)
            elif state.backend:
                await self._wait_ready(state.backend, names, no_progress)

    async def kill_replica(self, service: str, replica: int) -> None:
        self._check_service(service)
        await self._require_running()
        if service not in WORKER_SERVICES and replica != 1:
            raise RuntimeFailure(f"{service} has one replica: use 1")
        name = replica_name(service, replica) if service in WORKER_SERVICES else service
        info = (await self.sup.processes()).get(name)
        if not info or not info["pid"]:
            raise RuntimeFailure(f"{name} is not running")
        with contextlib.suppress(ProcessLookupError):
            os.kill(info["pid"], signal.SIGKILL)  # supervisord sees an unexpected exit and restarts it

    def logs(self, service: str, *, tail: int = 100, follow: bool = False) -> AsyncIterator[LogLine]:
        self._check_service(service)

        def sources() -> dict[str, Path]:
            names = [n for _, n in self._replicas_of(service, configured_programs(self.dir))]
            if not names and not follow:  # stack down: the last run's files are still worth reading
                names = [n for _, n in self._replicas_of(service, [p.stem for p in self.dir.logs.glob("*.log")])]
            return {n: self.dir.log_file(n) for n in names}

        async def lines() -> AsyncIterator[LogLine]:
            async for tag, text, ts in follow_files(sources, tail=tail, follow=follow):
                yield LogLine(service=service, replica=tag, text=text, timestamp=ts)

        return lines()


def _backend(backend: str) -> str:
    try:
        return check_backend(backend)
    except ConfigError as exc:
        raise RuntimeFailure(str(exc)) from None
