"""The compose runtime: the stack of compose/*.yml on a Docker engine.

Changes (up, down, scale, restart) go through the Compose CLI — `docker compose`
(v2), else `docker-compose` (v1) — always as argument lists. What runs, its
health and its logs come from the engine through the `docker` SDK, found by
Compose's labels (com.docker.compose.project / .service / .container-number).

Which broker runs is which backend file joins docker-compose.yml (see its
header); the runtime records the choice in compose/.env (COMPOSE_FILE,
QUEUE_BACKEND) so the guide's plain `docker compose …` commands see the same.

Configuration (environment, or the constructor):
  LADDR_COMPOSE_DIR       folder of the compose files (default: ./compose, else the installed one)
  LADDR_COMPOSE_ENV_FILE  the .env Compose reads (default: <dir>/.env, made from .env.example)
  LADDR_COMPOSE_PROJECT   project name (default: COMPOSE_PROJECT_NAME of that .env, else "laddr")
  LADDR_COMPOSE_CLI       force a CLI: "docker compose" or "docker-compose"
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import shutil
import threading
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sandbox.brokers.ports import port_is_free
from sandbox.config import (
    ConfigError,
    Settings,
    check_backend,
    read_env_file,
    scale_from_env,
    write_env,
)
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
from sandbox.runtime.compose_images import DEFAULT_IMAGES

HOST = "127.0.0.1"
BASE_FILE = "docker-compose.yml"
BACKEND_FILES = {"kafka": ("docker-compose.kafka.yml", "docker-compose.kraft.yml"), "redis": ("docker-compose.redis.yml",)}
BROKER_SERVICES = {"kafka": ("zookeeper", "kafka", "kafka-init", "kafka-ui"), "redis": ("redis",)}
ONE_SHOT = {"kafka-init"}  # jobs that run to completion; not shown as services
# In-network addresses the containers use (the host gets 127.0.0.1 ports instead).
IN_NETWORK = {"kafka": ("KAFKA_BOOTSTRAP", "kafka:9092"), "redis": ("REDIS_URL", "redis://redis:6379/0")}
# Host ports: variable, default, and the backend that publishes it (None: always).
HOST_PORTS = {"API_HOST_PORT": (8000, None), "KAFKA_HOST_PORT": (19092, "kafka"), "REDIS_HOST_PORT": (6379, "redis")}
UI_PORT = ("KAFKA_UI_HOST_PORT", 8080)
# Settings the compose .env owns: a stray export in the shell must not override them.
ENV_OWNED = ("QUEUE_BACKEND", "KAFKA_BOOTSTRAP", "REDIS_URL", "COMPOSE_FILE")
LABEL_PROJECT, LABEL_SERVICE, LABEL_NUMBER = (f"com.docker.compose.{k}" for k in ("project", "service", "container-number"))
MAX_REPLICAS = 32
READY_TIMEOUT_S = float(os.environ.get("LADDR_COMPOSE_READY_TIMEOUT", "180"))

_STATES = {"running": "running", "created": "starting", "restarting": "restarting", "exited": "exited",
           "paused": "stopped", "removing": "stopped", "dead": "fatal"}


def _default_dir() -> Path:
    from sandbox.runtime import compose_file

    found = compose_file()
    return found.parent if found else Path.cwd() / "compose"


def _docker_time(stamp: str) -> float | None:
    """Docker's RFC 3339 nanosecond stamps ("2026-11-27T09:55:18.123456789Z") as epoch seconds."""
    if not stamp or stamp.startswith("0001-"):
        return None
    head, _, frac = stamp.rstrip("Z").partition(".")
    try:
        whole = datetime.fromisoformat(head + "+00:00").timestamp()
    except ValueError:
        return None
    return whole + (float(f"0.{frac[:9]}") if frac.isdigit() else 0.0)


class ComposeRuntime(Runtime):
    name = "compose"

    def __init__(self, settings: Settings, *, compose_dir: Path | None = None, env_file: Path | None = None,
                 project: str | None = None, cli: list[str] | None = None):
        super().__init__(settings)
        self.dir = Path(compose_dir or os.environ.get("LADDR_COMPOSE_DIR") or _default_dir()).resolve()
        self.env_file = Path(env_file or os.environ.get("LADDR_COMPOSE_ENV_FILE") or self.dir / ".env").resolve()
        self._project = project or os.environ.get("LADDR_COMPOSE_PROJECT")
        self._cli = cli or (shlex.split(os.environ["LADDR_COMPOSE_CLI"]) if os.environ.get("LADDR_COMPOSE_CLI") else None)
        self._client: Any = None

    # -- configuration ---------------------------------------------------------------
    def _values(self) -> dict[str, str]:
        """compose .env overlaid by the environment, as Compose itself resolves variables."""
        try:
            values = read_env_file(self.env_file)
        except ConfigError as exc:
            raise RuntimeFailure(f"{exc}: fix that line and retry") from None
        return {**values, **{k: v for k, v in os.environ.items() if k not in ENV_OWNED}}

    @property
    def project(self) -> str:
        return self._project or self._values().get("COMPOSE_PROJECT_NAME") or "laddr"

    def _port(self, var: str, default: int) -> int:
        raw = self._values().get(var) or str(default)
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            raise RuntimeFailure(f"{var} must be a port number, not {raw!r}: fix it in {self.env_file}")
        return int(raw)

    def _ensure_env_file(self) -> None:
        if not self.env_file.exists():
            example = self.dir / ".env.example"
            self.env_file.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(example, self.env_file) if example.exists() else self.env_file.touch()

    def _files(self, backend: str) -> list[str]:
        """docker-compose.yml + the backend's file (the one COMPOSE_FILE names, if it names one)."""
        named = re.split(r"[:;]", self._values().get("COMPOSE_FILE", ""))
        chosen = next((f for f in named if Path(f).name in BACKEND_FILES[backend]), BACKEND_FILES[backend][0])
        files = [BASE_FILE, chosen]
        for f in files:
            if not (self.dir / f).is_file():
                raise RuntimeFailure(f"{self.dir / f} is missing: set LADDR_COMPOSE_DIR to the sandbox's compose folder")
        return files

    def _profiles(self) -> list[str]:
        return [p for p in self._values().get("COMPOSE_PROFILES", "").split(",") if p.strip()]

    def bus_settings(self, backend: str) -> Settings:
        return replace(
            self.settings,
            queue_backend=check_backend(backend),
            kafka_bootstrap=f"{HOST}:{self._port('KAFKA_HOST_PORT', 19092)}",
            redis_url=f"redis://{HOST}:{self._port('REDIS_HOST_PORT', 6379)}/0",
            api_host=HOST,
            api_port=self._port("API_HOST_PORT", 8000),
        )

    def _record(self, backend: str, files: list[str]) -> None:
        """What the stack runs on, in compose/.env (the guide's `.env` edits)."""
        self._ensure_env_file()
        key, address = IN_NETWORK[backend]
        write_env(self.env_file, {"COMPOSE_FILE": ":".join(files), "QUEUE_BACKEND": backend, key: address})

    # -- the Compose CLI -------------------------------------------------------------
    async def _compose_cli(self) -> list[str]:
        if self._cli:
            return self._cli
        if not shutil.which("docker") and not shutil.which("docker-compose"):
            raise RuntimeFailure("Docker is not installed: run scripts/setup-docker.sh (or install Docker and Compose)")
        if shutil.which("docker"):
            proc = await asyncio.create_subprocess_exec("docker", "compose", "version", stdout=asyncio.subprocess.DEVNULL,
                                                        stderr=asyncio.subprocess.DEVNULL)
            if await proc.wait() == 0:
                self._cli = ["docker", "compose"]
                return self._cli
        if shutil.which("docker-compose"):
            self._cli = ["docker-compose"]
            return self._cli
        raise RuntimeFailure("no Compose CLI: install the docker compose plugin (v2) or docker-compose; "
                             "scripts/setup-docker.sh does")

    def _compose_env(self, profiles: list[str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ENV_OWNED}
        if profiles is not None:
            env["COMPOSE_PROFILES"] = ",".join(profiles)
        return env

    async def _compose(self, backend: str, *args: str, progress: Progress = no_progress,
                       profiles: list[str] | None = None) -> str:
        cmd = [*await self._compose_cli(), "--project-directory", str(self.dir), "--env-file", str(self.env_file),
               "-p", self.project]
        for f in self._files(backend):
            cmd += ["-f", str(self.dir / f)]
        cmd += list(args)
        proc = await asyncio.create_subprocess_exec(*cmd, cwd=self.dir, env=self._compose_env(profiles),
                                                    stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        lines: list[str] = []
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").strip()
            if line and line not in lines[-8:]:  # v2 repeats its status lines while it waits
                progress(line)
            if line:
                lines.append(line)
        if await proc.wait() != 0:
            raise RuntimeFailure(self._explain(lines, args[0] if args else "compose"))
        return "\n".join(lines)

    def _explain(self, lines: list[str], verb: str) -> str:
        text = "\n".join(lines)
        low = text.lower()
        if "port is already allocated" in low or "address already in use" in low:
            return f"a host port of the stack is taken by another program: stop it or change the *_HOST_PORT settings in {self.env_file}"
        if "cannot connect to the docker daemon" in low or "is the docker daemon running" in low:
            return "the Docker engine is not running: start it (scripts/setup-docker.sh starts dockerd)"
        if "pull access denied" in low or "no such image" in low or "manifest unknown" in low or "failed to resolve" in low:
            return f"an image of the stack is missing and cannot be pulled: build local images with scripts/setup-docker.sh ({lines[-1][:160]})"
        last = next((ln for ln in reversed(lines) if not ln.lower().startswith(("warn", "time="))), "no output")
        return f"docker compose {verb} failed: {last[:300]}"

    # -- the engine (docker SDK, blocking calls run in threads) ------------------------
    def _docker(self) -> Any:
        if self._client is None:
            if not shutil.which("docker") and not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
                raise RuntimeFailure("Docker is not installed: run scripts/setup-docker.sh (or install Docker and Compose)")
            try:
                import docker
            except ImportError:
                raise RuntimeFailure("the compose runtime needs the docker SDK: pip install 'laddr-sandbox[docker]'") from None
            try:
                client = docker.from_env(timeout=30)
                client.ping()
            except Exception as exc:  # noqa: BLE001 - DockerException, requests' ConnectionError…: all mean "no engine"
                host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
                why = str(exc).split(": ", 1)[-1][:120]
                raise RuntimeFailure(f"cannot reach the Docker engine at {host} ({why}): start it, e.g. scripts/setup-docker.sh") from None
            self._client = client
        return self._client

    async def _containers(self, service: str | None = None, all_: bool = True) -> list[Any]:
        def query() -> list[Any]:
            labels = [f"{LABEL_PROJECT}={self.project}"] + ([f"{LABEL_SERVICE}={service}"] if service else [])
            found = self._docker().containers.list(all=all_, filters={"label": labels})
            return sorted(found, key=lambda c: (c.labels.get(LABEL_SERVICE, ""), _number(c)))

        return await asyncio.to_thread(query)

    async def _image_ready(self, image: str, progress: Progress) -> str | None:
        """None when the image is here (pulled if need be), else why not."""
        import docker.errors

        def check() -> str | None:
            client = self._docker()
            try:
                client.images.get(image)
                return None
            except docker.errors.ImageNotFound:
                pass
            if image.startswith("laddr-sandbox/"):
                return "not built"
            progress(f"pulling {image}")
            try:
                client.images.pull(image)
                return None
            except docker.errors.DockerException as exc:
                why = " ".join(str(getattr(exc, "explanation", None) or exc).split())
                return f"not here and cannot be pulled ({why[:140]})"

        return await asyncio.to_thread(check)

    async def _check_images(self, backend: str, services: Iterable[str], progress: Progress) -> list[str]:
        """Fail when an image is missing; returns the profiles to use (Kafka UI dropped if its image is missing)."""
        values, profiles = self._values(), self._profiles()
        wanted = {"SANDBOX_IMAGE"} if set(services) & set(APP_SERVICES) else set()
        if backend == "kafka" and set(services) & set(BROKER_SERVICES["kafka"]):
            kraft = "kraft" in self._files("kafka")[1]
            wanted |= {"KAFKA_IMAGE"} | (set() if kraft else {"ZOOKEEPER_IMAGE"})
        if backend == "redis" and "redis" in services:
            wanted.add("REDIS_IMAGE")
        for var in sorted(wanted):
            image = values.get(var) or DEFAULT_IMAGES[var]
            if why := await self._image_ready(image, progress):
                raise RuntimeFailure(f"image {image} ({var}) is {why}: run scripts/setup-docker.sh, which builds "
                                     f"local images and sets {var} in {self.env_file}")
        if backend == "kafka" and "ui" in profiles and "kafka-ui" in services:
            image = values.get("KAFKA_UI_IMAGE") or DEFAULT_IMAGES["KAFKA_UI_IMAGE"]
            if why := await self._image_ready(image, progress):
                progress(f"Kafka UI left out: image {image} is {why}")
                profiles.remove("ui")
        return profiles

    async def _check_ports(self, backend: str, services: Iterable[str], profiles: list[str]) -> None:
        """A host port already taken by something that is not this stack: one clear line."""
        services = set(services)
        mine = {p for c in await self._containers(all_=False) for p in _published(c)}
        checks = [(var, default) for var, (default, only) in HOST_PORTS.items()
                  if (only is None and services & set(APP_SERVICES)) or (only == backend and services & set(BROKER_SERVICES[backend]))]
        if backend == "kafka" and "ui" in profiles and "kafka-ui" in services:
            checks.append(UI_PORT)
        for var, default in checks:
            port = self._port(var, default)
            if port not in mine and not port_is_free(port, HOST):
                raise RuntimeFailure(f"port {port} ({var}) is taken by another program: stop it, or set {var} "
                                     f"to a free port in {self.env_file}")

    # -- the whole stack ---------------------------------------------------------------
    async def up(self, backend: str, progress: Progress = no_progress) -> None:
        backend = check_backend(backend)
        await self._compose_cli()
        await asyncio.to_thread(self._docker)
        files = self._files(backend)
        services = [*BROKER_SERVICES[backend], *APP_SERVICES]
        profiles = await self._check_images(backend, services, progress)
        await self._check_ports(backend, services, profiles)
        scale = await self._worker_scale()
        self._record(backend, files)
        progress(f"starting the {backend} stack ({' + '.join(files)})")
        await self._compose(backend, "up", "-d", "--remove-orphans", *_scale_args(scale),
                            progress=progress, profiles=profiles)
        await self._wait_ready([*_broker_running(backend), *APP_SERVICES], progress)

    async def down(self, progress: Progress = no_progress) -> None:
        backend = await self.current_backend() or _backend_of_file(self._values().get("COMPOSE_FILE", "")) or "kafka"
        progress(f"stopping the compose project {self.project}")
        await self._compose(backend, "down", "--remove-orphans", "--volumes", "--timeout", "20",
                            progress=progress, profiles=[*self._profiles(), "ui"])
        # Whatever Compose left (a service of a profile it did not load): remove it too.
        leftovers = await self._containers()
        if leftovers:
            await asyncio.to_thread(lambda: [c.remove(force=True, v=True) for c in leftovers])

    async def current_backend(self) -> str | None:
        running = await self._containers(all_=False)
        for c in running:  # what the apps were started with wins (both brokers run during a switch)
            if c.labels.get(LABEL_SERVICE) in APP_SERVICES:
                env = dict(e.split("=", 1) for e in c.attrs.get("Config", {}).get("Env") or [] if "=" in e)
                if env.get("QUEUE_BACKEND") in BACKEND_FILES:
                    return env["QUEUE_BACKEND"]
        names = {c.labels.get(LABEL_SERVICE) for c in running}
        return next((b for b in ("kafka", "redis") if b in names), None)

    async def _require_backend(self) -> str:
        backend = await self.current_backend()
        if backend is None:
            raise StackNotRunning(self.name)
        return backend

    # -- services --------------------------------------------------------------------
    async def services(self) -> list[ServiceStatus]:
        containers = await self._containers()
        backend = await self.current_backend()
        by_service: dict[str, list[Any]] = {}
        for c in containers:
            by_service.setdefault(c.labels.get(LABEL_SERVICE, "?"), []).append(c)
        order = [s for b in ("kafka", "redis") for s in BROKER_SERVICES[b] if s in by_service or (b == backend and s in _broker_running(b))]
        out = []
        for name in [*dict.fromkeys(order), *APP_SERVICES]:
            if name in ONE_SHOT:
                continue
            cs = by_service.get(name, [])
            kind = "api" if name == "api" else "worker" if name in WORKER_SERVICES else "ui" if name == "kafka-ui" else "broker"
            desired = len(cs) if backend else 0
            status = ServiceStatus(name, kind, desired=desired, replicas=[_replica(name, c) for c in cs],
                                   ports=sorted({p for c in cs for p in _published(c)}))
            status.health = _health(cs)
            out.append(status)
        return out

    def _known(self) -> list[str]:
        return [*dict.fromkeys(s for b in ("kafka", "redis") for s in BROKER_SERVICES[b] if s not in ONE_SHOT), *APP_SERVICES]

    def _check_service(self, service: str) -> None:
        if service not in self._known():
            raise UnknownService(service, self._known())

    async def _worker_scale(self) -> dict[str, int]:
        """Replicas per worker: as many containers as exist now (running or stopped), else SCALE_<SERVICE> of .env (1)."""
        counts = {s: 0 for s in WORKER_SERVICES}
        for c in await self._containers():
            if (s := c.labels.get(LABEL_SERVICE)) in counts:
                counts[s] += 1
        try:
            pinned = scale_from_env(self._values())
        except ConfigError as exc:
            raise RuntimeFailure(f"{exc}: fix it in {self.env_file}") from None
        return {s: n or pinned[s] for s, n in counts.items()}

    async def scale(self, service: str, replicas: int) -> None:
        self._check_service(service)
        if service not in WORKER_SERVICES:
            raise RuntimeFailure(f"only worker services scale; {service} runs once (try: laddr-sandbox restart {service})")
        if not 0 <= replicas <= MAX_REPLICAS:
            raise RuntimeFailure(f"replicas must be between 0 and {MAX_REPLICAS}, not {replicas}")
        backend = await self._require_backend()
        await self._compose(backend, "up", "-d", "--no-deps", "--no-recreate", "--scale", f"{service}={replicas}", service)
        if replicas:
            await self._wait_ready([service], no_progress)

    async def restart(self, service: str) -> None:
        self._check_service(service)
        backend = await self._require_backend()
        if not await self._containers(service):
            raise RuntimeFailure(f"{service} is not part of the running stack")
        await self._compose(backend, "restart", service)
        await self._wait_ready([service], no_progress)

    async def kill_replica(self, service: str, replica: int) -> None:
        self._check_service(service)
        await self._require_backend()
        target = next((c for c in await self._containers(service, all_=False) if _number(c) == replica), None)
        if target is None:
            raise RuntimeFailure(f"{service}-{replica} is not running")

        def kill_and_revive() -> None:
            target.kill(signal="SIGKILL")
            # The engine does not apply a restart policy to a container it was told to kill,
            # so bring it back as the policy would after a crash.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                target.reload()
                if target.status != "running":
                    break
                time.sleep(0.1)
            target.start()

        await asyncio.to_thread(kill_and_revive)

    # -- logs ------------------------------------------------------------------------
    async def logs(self, service: str, *, tail: int = 100, follow: bool = False) -> AsyncIterator[LogLine]:
        """Every replica's lines, tagged by replica; following picks up new and restarted replicas."""
        self._check_service(service)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[LogLine] = asyncio.Queue()
        streams: dict[str, Any] = {}  # container id -> open log stream
        last: dict[str, str] = {}  # container id -> docker timestamp of the last line passed on
        stop = threading.Event()

        def pump(container: Any, since: str | None) -> None:
            name = f"{service}-{_number(container)}"
            kwargs: dict[str, Any] = {"stream": True, "follow": follow, "timestamps": True}
            if since:
                kwargs["since"] = _docker_time(since)
            else:
                kwargs["tail"] = tail
            try:
                stream = container.logs(**kwargs)
                streams[container.id] = stream
                for raw in stream:
                    if stop.is_set():
                        break
                    for row in raw.decode(errors="replace").splitlines():
                        stamp, _, text = row.partition(" ")
                        if since and stamp <= last.get(container.id, ""):
                            continue  # `since` is inclusive: do not repeat the last line
                        last[container.id] = stamp
                        loop.call_soon_threadsafe(queue.put_nowait, LogLine(service, name, text, _docker_time(stamp)))
            except Exception:  # noqa: BLE001, S110 - the container went away mid-stream: the watcher re-attaches
                pass
            finally:
                streams.pop(container.id, None)

        if not follow:
            containers = await self._containers(service)
            threads = [threading.Thread(target=pump, args=(c, None), daemon=True) for c in containers]
            for t in threads:
                t.start()
            await asyncio.to_thread(lambda: [t.join() for t in threads])
            lines = []
            while not queue.empty():
                lines.append(queue.get_nowait())
            for line in sorted(lines, key=lambda ln: ln.timestamp or 0.0):
                yield line
            return

        async def watch() -> None:
            # Attach to each running replica; a replica that stopped and runs again, or a new one, is re-attached.
            while not stop.is_set():
                for c in await self._containers(service, all_=False):
                    if c.id not in streams and c.status == "running":
                        streams[c.id] = None  # claimed before the thread opens it
                        threading.Thread(target=pump, args=(c, last.get(c.id)), daemon=True).start()
                await asyncio.sleep(1.0)

        watcher = asyncio.create_task(watch())
        try:
            while True:
                yield await queue.get()
        finally:
            stop.set()
            watcher.cancel()
            for stream in list(streams.values()):
                with contextlib.suppress(Exception):
                    stream.close()

    # -- pieces of the backend switch ------------------------------------------------------
    async def start_broker(self, backend: str, progress: Progress = no_progress) -> None:
        backend = check_backend(backend)
        services = list(BROKER_SERVICES[backend])
        profiles = await self._check_images(backend, services, progress)
        await self._check_ports(backend, services, profiles)
        progress(f"starting the {backend} broker")
        # The last service pulls in the rest through depends_on (kafka-init -> kafka -> zookeeper).
        target = ["kafka-init", *(["kafka-ui"] if "ui" in profiles else [])] if backend == "kafka" else ["redis"]
        await self._compose(backend, "up", "-d", *target, progress=progress, profiles=profiles)
        await self._wait_ready(_broker_running(backend), progress)

    async def stop_broker(self, backend: str, progress: Progress = no_progress) -> None:
        backend = check_backend(backend)
        present = {c.labels.get(LABEL_SERVICE) for c in await self._containers()}
        services = [s for s in BROKER_SERVICES[backend] if s in present]
        if services:
            progress(f"stopping the {backend} broker")
            await self._compose(backend, "rm", "--stop", "--force", "-v", *services, progress=progress,
                                profiles=[*self._profiles(), "ui"])

    async def stop_apps(self, progress: Progress = no_progress) -> None:
        backend = await self._require_backend()
        progress("stopping the api and workers")
        await self._compose(backend, "stop", "--timeout", "20", *APP_SERVICES, progress=progress)

    async def start_apps(self, backend: str, progress: Progress = no_progress) -> None:
        backend = check_backend(backend)
        await self._check_images(backend, APP_SERVICES, progress)
        await self._check_ports(backend, APP_SERVICES, [])
        scale = await self._worker_scale()
        files = self._files(backend)
        self._record(backend, files)
        progress(f"starting the api and workers on {backend}")
        await self._compose(backend, "up", "-d", *_scale_args(scale), *APP_SERVICES, progress=progress,
                            profiles=self._profiles())
        await self._wait_ready(list(APP_SERVICES), progress)

    # -- waiting -----------------------------------------------------------------------
    async def _wait_ready(self, services: list[str], progress: Progress, timeout: float = READY_TIMEOUT_S) -> None:
        """Every replica of `services` running and healthy; fails fast on a crash loop."""
        deadline = time.monotonic() + timeout
        said = ""
        while True:
            waiting = []
            for service in services:
                cs = await self._containers(service)
                if not cs:
                    waiting.append(f"{service} (no container)")
                for c in cs:
                    state = c.attrs["State"]
                    health = (state.get("Health") or {}).get("Status")
                    if state["Status"] == "running" and health in (None, "healthy"):
                        continue
                    if c.attrs.get("RestartCount", 0) >= 3 or state["Status"] == "exited":
                        raise RuntimeFailure(f"{service}-{_number(c)} keeps failing ({state['Status']}, "
                                             f"{c.attrs.get('RestartCount', 0)} restarts): {_last_line(c)}")
                    waiting.append(f"{service}-{_number(c)} ({health or state['Status']})")
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise RuntimeFailure(f"not ready after {timeout:.0f}s: {', '.join(waiting)}")
            line = "waiting for " + ", ".join(waiting[:4]) + (" …" if len(waiting) > 4 else "")
            if line != said:
                progress(line)
                said = line
            await asyncio.sleep(1.0)


# -- helpers ------------------------------------------------------------------------------
def _number(container: Any) -> int:
    try:
        return int(container.labels.get(LABEL_NUMBER, "1"))
    except ValueError:
        return 1


def _broker_running(backend: str) -> list[str]:
    """The broker services that stay up (not the one-shot init job, not the optional UI)."""
    return ["zookeeper", "kafka"] if backend == "kafka" else ["redis"]


def _backend_of_file(compose_file: str) -> str | None:
    return next((b for b, names in BACKEND_FILES.items() if any(n in compose_file for n in names)), None)


def _scale_args(scale: dict[str, int]) -> list[str]:
    return [arg for service, n in scale.items() for arg in ("--scale", f"{service}={n}")]


def _published(container: Any) -> list[int]:
    ports = (container.attrs.get("NetworkSettings") or {}).get("Ports") or {}
    return sorted({int(b["HostPort"]) for bindings in ports.values() if bindings for b in bindings if b.get("HostPort")})


def _replica(service: str, c: Any) -> Replica:
    state = c.attrs["State"]
    health = (state.get("Health") or {}).get("Status")
    status = _STATES.get(state["Status"], "exited")
    if status == "running" and health == "starting":
        status = "starting"
    started = _docker_time(state.get("StartedAt", ""))
    detail = f"health: {health}" if health and health != "healthy" else ""
    if state["Status"] == "exited":
        detail = f"exit code {state.get('ExitCode')}"
    return Replica(
        name=f"{service}-{_number(c)}", index=_number(c), state=status, pid=state.get("Pid") or None,
        uptime_s=time.time() - started if started and state["Status"] == "running" else None,
        restarts=c.attrs.get("RestartCount", 0), detail=detail,
    )


def _health(containers: list[Any]) -> str:
    if not containers:
        return "unknown"
    states = [((c.attrs["State"].get("Health") or {}).get("Status"), c.attrs["State"]["Status"]) for c in containers]
    if any(s != "running" for _, s in states) or any(h == "unhealthy" for h, _ in states):
        return "unhealthy"
    if any(h == "starting" for h, _ in states):
        return "starting"
    return "healthy" if all(h == "healthy" for h, _ in states) else "unknown"


def _last_line(container: Any) -> str:
    with contextlib.suppress(Exception):
        lines = container.logs(tail=5).decode(errors="replace").strip().splitlines()
        if lines:
            return lines[-1][:200]
    return "no output"
