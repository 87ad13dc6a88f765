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
from urllib.parse import urlsplit

from sandbox.brokers.errors import BrokerError
from sandbox.brokers.kafka import wait_kafka_ready
from sandbox.brokers.redis_server import wait_redis_ready
from sandbox.bus import BusError, make_bus
from sandbox.config import ConfigError, Settings, write_env
from sandbox.protocol import BACKENDS
from sandbox.runtime.base import HOST, LogLine, Progress, Runtime, RuntimeFailure
from sandbox.runtime.base import (
    ServiceStatus, StackNotRunning, UnknownReplica, UnknownService, check_scale, no_progress, runtime_backend,
)
from sandbox.runtime.local.config import APPS_READY_S, KAFKA_READY_S, MAX_REPLICAS, REDIS_READY_S, LocalConfig
from sandbox.runtime.local.daemon import end_everything, start_supervisord
from sandbox.runtime.local.probes import api_answers, broker_answers
from sandbox.runtime.local.kafka_nodes import bootstrap, is_broker_program, node_count_change, node_programs, port_keys
from sandbox.runtime.local.kafka_nodes import storage_dir, wait_cluster
from sandbox.runtime.local.programs import (
    app_programs, broker_programs, prepare_project, project_notes, replica_name, service_of,
)
from sandbox.runtime.local.replica_logs import rotated_lines, service_lines
from sandbox.runtime.local.readiness import Readiness, last_log_line
from sandbox.runtime.local.statedir import State, StateDir, state_dir
from sandbox.runtime.local.status import ALIVE_STATES, replicas_of, service_rows
from sandbox.runtime.local.supervisor_client import Supervisor, restart_counts
from sandbox.runtime.local.supervisor_conf import Program, configured_programs, program_file, remove_program
from sandbox.runtime.local.supervisor_conf import write_program


class AppsNotReady(RuntimeFailure):
    """The api and workers were started but did not all become ready (e.g. one crash-loops)."""


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
        state = self.dir.load()
        ports, s = state.ports, self.settings
        redis_port = ports.get("redis") or urlsplit(s.redis_url).port or 6379
        kafka_port = ports.get("kafka") or int(s.kafka_bootstrap.split(",")[0].rpartition(":")[2])
        return replace(
            s,
            queue_backend=runtime_backend(backend),
            redis_url=f"redis://{HOST}:{redis_port}/0",
            kafka_bootstrap=bootstrap(ports, state.kafka_brokers) if state.kafka_brokers > 1 else f"{HOST}:{kafka_port}",
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
        await start_supervisord(self.dir, self.sup, self.project_dir, progress)

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
        backend = runtime_backend(backend)
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
                await self.start_apps(backend, progress)
            except AppsNotReady:
                raise  # they were started: one that fails stays up for `status` and `logs` to explain
            except BaseException:
                # nothing was left running for the user (broker down, api port taken, no venv): leave no half stack
                with contextlib.suppress(Exception):
                    await self._teardown(no_progress)
                raise
            progress(f"stack up on {backend} in {time.monotonic() - started:.1f}s")

    async def down(self, progress: Progress = no_progress) -> None:
        if not self.dir.root.exists():
            progress("no sandbox stack here")  # and no state folder to create for it
            return
        async with self._locked():
            await self._teardown(progress)

    async def _teardown(self, progress: Progress) -> None:
        await end_everything(self.dir, self.sup, progress)

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
        return next((b for b in BACKENDS if b in {service_of(n) for n in procs}), None)

    # -- broker -----------------------------------------------------------------------------
    async def start_broker(self, backend: str, progress: Progress = no_progress) -> None:
        """Start a broker (beside the other one, if that runs) and make its topology."""
        backend = runtime_backend(backend)
        async with self._locked():
            await self._supervisord_up(progress)
            state = self.dir.load()
            running = await self._running_programs()
            nodes = self.settings.kafka_brokers if backend == "kafka" else 1
            keys = ("redis",) if backend == "redis" else port_keys(nodes)
            ports = self.config.choose_ports(state, keys, running, nodes)
            if backend == "kafka" and (note := node_count_change(self.dir.data, state.kafka_brokers, nodes)):
                progress(note)
            state.kafka_brokers = nodes if backend == "kafka" else state.kafka_brokers
            self.dir.save(state)
            names = self._broker_names(backend)
            if not set(names) <= running or not await broker_answers(backend, self._address(backend)):
                data = storage_dir(self.dir.data, nodes) if backend == "kafka" else self.dir.data / backend
                programs = await broker_programs(backend, self.settings, data, ports, self.project_dir, progress)
                what = "Redis" if backend == "redis" else "Kafka (JVM)" if nodes == 1 else f"{nodes} Kafka nodes (JVMs)"
                progress(f"starting {what} on {self._address(backend)}")
                stale = [n for n in configured_programs(self.dir) if service_of(n) == backend and n not in names]
                await self._apply(programs, remove=stale)
                await self._wait_broker(backend, progress)
            await self._ensure_topology(backend)

    def _broker_names(self, backend: str) -> list[str]:
        return node_programs(self.dir.load().kafka_brokers) if backend == "kafka" else [backend]

    async def _wait_broker(self, backend: str, progress: Progress) -> None:
        address = self._address(backend)
        started = time.monotonic()
        names = self._broker_names(backend)

        def alive() -> bool:  # between probes: a crash-looping broker fails fast
            try:
                return all(self.sup.call_sync("getProcessInfo", n)["statename"] not in ("FATAL", "STOPPED", "EXITED")
                           for n in names)
            except Exception:
                return False

        try:
            if backend == "redis":
                await wait_redis_ready(address, REDIS_READY_S)
            elif len(names) > 1:
                await wait_cluster(address, len(names), KAFKA_READY_S, alive, progress)
            else:
                await wait_kafka_ready(address, KAFKA_READY_S, alive=alive,
                                       progress=lambda s: progress(f"starting Kafka (JVM)… {s:.0f}s"))
        except BrokerError as exc:
            why = last_log_line(self.dir.log_file(names[0])) or exc
            raise RuntimeFailure(f"{backend} did not start: {why}; see {self.dir.log_file(names[0])}") from None
        progress(f"{backend} ready on {address} ({time.monotonic() - started:.1f}s)")

    async def _ensure_topology(self, backend: str) -> None:
        try:
            async with make_bus(self.bus_settings(backend), backend) as bus:
                await bus.ensure_topology(self.settings.agents, self.settings.kafka_partitions)
        except BusError as exc:
            raise RuntimeFailure(f"cannot create the {backend} topology: {exc}") from None

    async def stop_broker(self, backend: str, progress: Progress = no_progress) -> None:
        backend = runtime_backend(backend)
        async with self._locked():
            await self._require_running()
            progress(f"stopping {backend}")
            await self._apply([], remove=[n for n in configured_programs(self.dir) if service_of(n) == backend])

    # -- apps -------------------------------------------------------------------------------
    async def stop_apps(self, progress: Progress = no_progress) -> None:
        async with self._locked():
            await self._require_running()
            progress("stopping the workers and the api")
            await self._apply([], remove=[n for n in configured_programs(self.dir) if not is_broker_program(n)])

    def record_backend(self, backend: str) -> None:
        """QUEUE_BACKEND and the broker's address go to the project's `.env`, as the guide does by hand."""
        if not self.settings.env_file_writable:
            return  # a Laddr project's own .env: the state folder records the backend
        settings = self.bus_settings(backend)
        key, address = ("KAFKA_BOOTSTRAP", settings.kafka_bootstrap) if backend == "kafka" else ("REDIS_URL", settings.redis_url)
        try:
            write_env(Path(self.settings.env_file or self.project_dir / ".env"), {"QUEUE_BACKEND": backend, key: address})
        except ConfigError as exc:
            raise RuntimeFailure(f"{exc}: fix that line of the .env file and retry") from None

    async def start_apps(self, backend: str, progress: Progress = no_progress) -> None:
        """Start (or bring in line) the api and every worker replica on a backend, and wait for them."""
        backend = runtime_backend(backend)
        async with self._locked():
            state = await self._require_running()
            if not await broker_answers(backend, self._address(backend)):
                raise RuntimeFailure(f"{backend} is not running here: start it first (laddr-sandbox up {backend})")
            self.config.choose_ports(state, ("api",), await self._running_programs())
            state.backend, state.scale = backend, self.config.desired_scale(state)
            self.dir.save(state)
            await prepare_project(self.settings, progress)
            programs = app_programs(self.settings, self.bus_settings(backend), backend, state.scale, self.project_dir)
            wanted = {p.name for p in programs}
            extra = [n for n in configured_programs(self.dir) if n not in wanted and not is_broker_program(n)]
            progress(f"starting the api and {sum(state.scale.values())} worker(s) on {backend}")
            await self._apply(programs, remove=extra)
            try:
                await self._wait_ready(backend, [p.name for p in programs], progress)
            except RuntimeFailure as exc:
                raise AppsNotReady(str(exc)) from None

    async def _wait_ready(self, backend: str, names: list[str], progress: Progress) -> None:
        bus_settings = self.bus_settings(backend)
        try:
            async with make_bus(bus_settings, backend) as bus:
                readiness = Readiness(self.sup, bus, self.dir.log_file, self.settings.heartbeat_s,
                                      laddr_workers=self.settings.project is not None)
                await readiness.wait(names, lambda: api_answers(HOST, bus_settings.api_port),
                                     APPS_READY_S[backend], progress)
        except BusError as exc:
            raise RuntimeFailure(f"cannot reach {backend} to watch the workers register: {exc}") from None

    # -- services -----------------------------------------------------------------------------
    async def services(self) -> list[ServiceStatus]:
        state = self.dir.load()
        procs = await self.sup.processes() if await self.sup.alive() else {}
        restarts = await asyncio.to_thread(restart_counts, self.dir.supervisord_log) if procs else {}
        backend = state.backend or self.settings.queue_backend
        rows = await service_rows(state, procs, restarts, backend, self._address, self.settings.api_port,
                                  self.worker_services)
        notes = project_notes(self.settings)
        for row in rows:
            row.note = notes.get(row.name, "")
        return rows

    def _check_service(self, service: str) -> None:
        known = [*BACKENDS, *self.app_services]
        if service not in known:
            raise UnknownService(service, known)

    # -- actions on one service ------------------------------------------------------------------
    async def scale(self, service: str, replicas: int) -> None:
        self._check_service(service)
        check_scale(service, replicas, MAX_REPLICAS, self.worker_services)
        async with self._locked():
            state = await self._require_running()
            if not state.backend:
                raise RuntimeFailure("the workers are not running: start them with laddr-sandbox up")
            state.scale = {**self.config.desired_scale(state), service: replicas}
            self.dir.save(state)
            everything = app_programs(self.settings, self.bus_settings(state.backend), state.backend,
                                      state.scale, self.project_dir)
            programs = [p for p in everything if service_of(p.name) == service]
            current = [n for _, n in replicas_of(service, configured_programs(self.dir))]
            added = [p.name for p in programs if p.name not in current]
            await self._apply(programs, remove=[n for n in current if n not in {p.name for p in programs}])
            if added:
                await self._wait_ready(state.backend, added, no_progress)

    async def restart(self, service: str) -> None:
        self._check_service(service)
        async with self._locked():
            state = await self._require_running()
            names = [n for _, n in replicas_of(service, await self.sup.processes())]
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
        procs = await self.sup.processes()
        replicas = dict(replicas_of(service, procs))  # a Kafka cluster's nodes are replicas too
        if replicas and replica not in replicas:
            raise UnknownReplica(service, replica, sorted(replicas))
        name = replicas.get(replica, replica_name(service, replica))
        info = procs.get(name)
        if not info or not info["pid"]:
            raise RuntimeFailure(f"{name} is not running")
        with contextlib.suppress(ProcessLookupError):
            os.kill(info["pid"], signal.SIGKILL)  # supervisord sees an unexpected exit and restarts it

    def logs(self, service: str, *, tail: int = 100, follow: bool = False) -> AsyncIterator[LogLine]:
        self._check_service(service)
        return service_lines(self.dir, service, tail=tail, follow=follow)

    def earlier_logs(self, service: str, *, tail: int = 100) -> AsyncIterator[LogLine]:
        self._check_service(service)
        return rotated_lines(self.dir, service, tail=tail)

