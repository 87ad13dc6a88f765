"""The compose runtime: the stack of compose/*.yml on a Docker engine.

Changes (up, down, scale, restart) go through the Compose CLI (cli.py); what
runs, its health and its logs come from the engine through the docker SDK
(engine.py, logs.py), found by Compose's labels.

Which broker runs is which backend file joins docker-compose.yml (see its
header); the runtime records the choice in compose/.env (COMPOSE_FILE,
QUEUE_BACKEND) so the guide's plain `docker compose …` commands see the same.
Configuration: config.py (LADDR_COMPOSE_DIR, _ENV_FILE, _PROJECT) and cli.py (LADDR_COMPOSE_CLI).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

from sandbox.brokers.ports import port_is_free
from sandbox.config import ConfigError, Settings, check_backend
from sandbox.runtime.base import HOST, LogLine, Progress, Runtime, RuntimeFailure
from sandbox.runtime.base import ServiceStatus, StackNotRunning, UnknownReplica, UnknownService, check_scale, no_progress
from sandbox.runtime.compose.cli import ComposeCli
from sandbox.runtime.compose.config import BACKEND_FILES, BROKER_SERVICES, CLUSTER_FILE, CLUSTER_NODES, HOST_PORTS, UI_PORT
from sandbox.runtime.compose.config import ComposeConfig
from sandbox.runtime.compose.config import is_packaged
from sandbox.runtime.compose.engine import Engine, env_of, health_of, published, replica
from sandbox.runtime.compose.engine import service_health, service_of
from sandbox.runtime.compose.logs import service_logs
from sandbox.runtime.compose.nodes import members, nodes_of_container, nodes_of_file, replica_index, shown_service
from sandbox.runtime.compose.readiness import api_answers, wait_ready, worker_said_ready

# The broker services that stay up (not the one-shot init job, not the optional UI).
BROKER_RUNNING = {"kafka": ["zookeeper", "kafka"], "redis": ["redis"]}
ONE_SHOT = {"kafka-init"}  # jobs that run to completion; not shown as services
MAX_REPLICAS = 32
READY_TIMEOUT_S = float(os.environ.get("LADDR_COMPOSE_READY_TIMEOUT", "180"))


class ComposeRuntime(Runtime):
    name = "compose"

    def __init__(self, settings: Settings, *, compose_dir: Path | None = None, env_file: Path | None = None,
                 project: str | None = None, cli: list[str] | None = None, cwd: Path | None = None):
        super().__init__(settings)
        if settings.project is not None:  # a Laddr project's own docker-compose.yml (project.py)
            from sandbox.runtime.compose.project import ProjectComposeConfig

            self.config: ComposeConfig = ProjectComposeConfig(settings.project, project=project)
        else:
            self.config = ComposeConfig(compose_dir, env_file, project, root=cwd)
            self.config.kafka_brokers = settings.kafka_brokers  # a project's own file has one broker
        self.dir, self.env_file, self.project = self.config.dir, self.config.env_file, self.config.project
        self.cli = ComposeCli(self.config, cli)
        self.engine = Engine(self.project, self.config.root)

    def bus_settings(self, backend: str) -> Settings:
        return self.config.host_settings(self.settings, backend)

    async def _compose(self, backend: str, *args: str, progress: Progress = no_progress,
                       profiles: list[str] | None = None) -> str:
        return await self.cli.run(self.config.files(backend), *args, progress=progress, profiles=profiles)

    async def _containers(self, service: str | None = None, all_: bool = True) -> list[Any]:
        return await self.engine.containers(service, all_)

    async def _check_owner(self) -> None:
        """Compose acts on a whole project: refuse one that another folder's containers share."""
        others = await self.engine.other_roots()
        if others:
            raise RuntimeFailure(f"the compose project {self.project} also runs containers of {', '.join(sorted(others))}: "
                                 f"not touching it from {self.config.root}; unset LADDR_COMPOSE_PROJECT or pick another name")

    # -- checks before anything starts ---------------------------------------------------
    @property
    def for_project(self) -> bool:
        return self.settings.project is not None

    async def _prepare_project(self, backend: str, progress: Progress, *, apps: bool = True) -> None:
        """A Laddr project: its image (built if need be), its ports, and its files as Compose reads them."""
        if not self.for_project:
            return
        from sandbox.runtime.compose.images import ImageBuildError
        from sandbox.runtime.compose.project_image import ensure_project_image, image_tag

        config = self.config
        try:
            files = config.files(backend)
        except ConfigError:
            await self._compose_config([str(config.laddr.compose_file)])  # compose's own words, if it has any
            raise
        left_out = config.left_out()
        if left_out:
            progress(f"left out {', '.join(left_out)} of {config.laddr.compose_file.name}: the sandbox needs only "
                     "the broker, the api and the workers (their images are not built here)")
        requirements = config.laddr.requirements_file
        try:
            config.prepare(image_tag(requirements))
            await self._compose_config(files)  # a file Compose refuses: said before any slow build
            if apps:
                await asyncio.to_thread(ensure_project_image, requirements, progress)
        except ImageBuildError as exc:
            raise RuntimeFailure(f"the image of {config.root}: {exc}") from None

    async def _compose_config(self, files: list[str]) -> None:
        """`docker compose config` of these files: a project file it refuses is bad input (its last line)."""
        try:
            await self.cli.run(files, "config", "--quiet")
        except RuntimeFailure as exc:
            raise ConfigError(f"{self.config.laddr.compose_file}: {exc}") from None

    async def _check_images(self, backend: str, services: Iterable[str], progress: Progress) -> list[str]:
        """Fail when an image is missing; returns the profiles to use (Kafka UI dropped if its image is missing)."""
        profiles = self.config.profiles()
        for var in self.config.image_vars(backend, services):
            image = self.config.image(var)
            if why := await self.engine.image_ready(image, progress):
                raise RuntimeFailure(f"image {image} ({var}) is {why}: run scripts/setup-docker.sh, which builds "
                                     f"local images and sets {var} in {self.env_file}")
        if backend == "kafka" and "ui" in profiles and "kafka-ui" in services:
            image = self.config.image("KAFKA_UI_IMAGE")
            if why := await self.engine.image_ready(image, progress):
                progress(f"Kafka UI left out: image {image} is {why}")
                profiles.remove("ui")
        return profiles

    async def _check_ports(self, backend: str, services: Iterable[str], profiles: list[str]) -> None:
        """A host port already taken by something that is not this stack: one clear line."""
        services = set(services)
        mine = {p for c in await self._containers(all_=False) for p in published(c)}
        checks = [(var, default) for var, (default, only) in HOST_PORTS.items()
                  if (only is None and services & set(self.app_services)) or (only == backend and services & set(BROKER_SERVICES[backend]))]
        if backend == "kafka" and "ui" in profiles and "kafka-ui" in services:
            checks.append(UI_PORT)
        for var, default in checks:
            port = self.config.port(var, default)
            if port not in mine and not port_is_free(port, HOST):
                raise RuntimeFailure(f"port {port} ({var}) is taken by another program: stop it, or set {var} "
                                     f"to a free port in {self.env_file}")

    # -- the whole stack ---------------------------------------------------------------
    async def up(self, backend: str, progress: Progress = no_progress) -> None:
        backend = check_backend(backend)
        await self.cli.find()
        await asyncio.to_thread(self.engine.client)
        await self._check_owner()
        if is_packaged(self.config.dir):  # an installed sandbox: its folder's compose .env, with the local images
            self.config.ensure_env_file()
        await self._prepare_project(backend, progress)
        files = self.config.files(backend)
        services = [*BROKER_SERVICES[backend], *self.app_services]
        profiles = await self._check_images(backend, services, progress)
        await self._check_ports(backend, services, profiles)
        scale = await self._worker_scale()
        fresh = await self._node_count_change(backend, files, progress)
        self.config.record(backend, files)
        progress(f"starting the {backend} stack ({' + '.join(Path(f).name for f in files)})")
        # A project's file has more than the stack (its redis on Kafka, minio…): name what runs.
        targets = ([s for s in services if (s != "kafka-ui" or "ui" in profiles) and s not in CLUSTER_NODES]
                   if self.for_project else  # a project's file has one Kafka node
                   [*self._broker_services(backend, profiles), *self.app_services])
        await self._compose(backend, "up", "-d", "--remove-orphans", *fresh, *_scale_args(scale), *targets,
                            progress=progress, profiles=profiles)
        await self._wait_ready([*self._broker_running(backend), *self.app_services], progress)
        await self._topics_job(backend, progress)

    async def _node_count_change(self, backend: str, files: list[str], progress: Progress) -> list[str]:
        """Another number of Kafka nodes than the existing containers were made for: fresh storage
        (a KRaft quorum names its voters for good; Compose would carry the old node's volume over)."""
        wanted = nodes_of_file(files) if backend == "kafka" and not self.for_project else 0
        had = await self._containers("kafka")
        if not wanted or not had or (before := nodes_of_container(had[0])) == wanted:
            return []
        progress(f"Kafka goes from {before} to {wanted} node(s): it starts with fresh storage "
                 "(the old node's topics and the tasks on them are not carried over)")
        return ["--renew-anon-volumes"]

    async def down(self, progress: Progress = no_progress) -> None:
        """Remove this folder's containers and network, and only the volumes made for its containers."""
        await self._check_owner()
        mine, networks = await self._containers(), await self.engine.networks()
        if not mine and not networks:
            progress(f"no compose stack of this folder here (project {self.project})")
            return
        volumes = await self.engine.made_volumes(mine)
        progress(f"taking down the compose project {self.project}: {len(mine)} container(s), "
                 f"network(s) {', '.join(networks) or 'none'}, {len(volumes)} volume(s) made for its containers"
                 + (f" ({', '.join(v[:12] for v in volumes)})" if volumes else ""))
        backend = await self.current_backend() or self.config.recorded_backend() or "kafka"
        await self._compose(backend, "down", "--remove-orphans", "--timeout", "20",
                            progress=progress, profiles=[*self.config.profiles(), "ui"])
        # Whatever Compose left (a service of a profile it did not load): remove it too.
        leftovers = await self._containers()
        if leftovers:
            await self.engine.remove(leftovers)
        if in_use := await self.engine.remove_volumes(volumes):
            progress(f"left {len(in_use)} volume(s) still in use by other containers: {', '.join(in_use)}")

    async def current_backend(self) -> str | None:
        running = await self._containers(all_=False)
        for c in running:  # what the apps were started with wins (both brokers run during a switch)
            if service_of(c) in self.app_services:
                backend = env_of(c).get("QUEUE_BACKEND")
                if backend in BACKEND_FILES:
                    return backend
        names = {service_of(c) for c in running}
        return next((b for b in ("kafka", "redis") if b in names), None)

    async def _require_backend(self) -> str:
        backend = await self.current_backend()
        if backend is None:
            raise StackNotRunning(self.name)
        return backend

    # -- services --------------------------------------------------------------------
    async def services(self) -> list[ServiceStatus]:
        found = await self._containers()
        backend = await self.current_backend()
        notes = self.config.llm_notes() if self.for_project else {}
        by_service: dict[str, list[Any]] = {}
        for c in found:  # a cluster's nodes are the replicas of `kafka`, as on the local runtime
            by_service.setdefault(shown_service(service_of(c) or "?"), []).append(c)
        expected = self._broker_running(backend) if backend else []  # no ZooKeeper row on a KRaft file
        order = [s for b in ("kafka", "redis") for s in BROKER_SERVICES[b] if s not in CLUSTER_NODES
                 and (s in by_service or s in expected)]
        out = []
        for name in [*dict.fromkeys(order), *self.app_services]:
            if name in ONE_SHOT:
                continue
            cs = by_service.get(name, [])
            for c in cs:
                if health_of(c) == "starting" and await self._says_ready(name, c):
                    c.attrs["State"]["Health"]["Status"] = "healthy"  # what Docker's next check will say
            kind = "api" if name == "api" else "worker" if name in self.worker_services else "ui" if name == "kafka-ui" else "broker"
            status = ServiceStatus(name, kind, desired=len(cs) if backend else 0,
                                   replicas=sorted((replica(name, c, replica_index(service_of(c), c)) for c in cs),
                                                   key=lambda r: r.index),
                                   ports=sorted({p for c in cs for p in published(c)}))
            status.health = service_health(cs)
            status.note = notes.get(name, "")
            out.append(status)
        return out

    def _known(self) -> list[str]:
        brokers = (s for b in ("kafka", "redis") for s in BROKER_SERVICES[b] if s not in {*ONE_SHOT, *CLUSTER_NODES})
        return [*dict.fromkeys(brokers), *self.app_services]

    def _check_service(self, service: str) -> None:
        if service not in self._known() and service not in CLUSTER_NODES:  # a node by its Compose name works too
            raise UnknownService(service, self._known())

    async def _worker_scale(self) -> dict[str, int]:
        """Replicas per worker: as many containers as exist now (running or stopped), else SCALE_<SERVICE> of .env (1)."""
        counts = {s: 0 for s in self.worker_services}
        for c in await self._containers():
            if (s := service_of(c)) in counts:
                counts[s] += 1
        pinned = self.config.pinned_scale(tuple(self.settings.agents))
        return {s: n or pinned[s] for s, n in counts.items()}

    async def scale(self, service: str, replicas: int) -> None:
        self._check_service(service)
        check_scale(service, replicas, MAX_REPLICAS, self.worker_services)
        backend = await self._require_backend()
        await self._check_owner()
        await self._compose(backend, "up", "-d", "--no-deps", "--no-recreate", "--scale", f"{service}={replicas}", service)
        if replicas:
            await self._wait_ready([service], no_progress)

    async def restart(self, service: str) -> None:
        self._check_service(service)
        backend = await self._require_backend()
        present = [s for s in members(service) if await self._containers(s)]  # `kafka`: every node
        if not present:
            raise RuntimeFailure(f"{service} is not part of the running stack")
        await self._check_owner()
        await self._compose(backend, "restart", *present)
        await self._wait_ready(present, no_progress)

    async def kill_replica(self, service: str, replica: int) -> None:
        self._check_service(service)
        await self._require_backend()
        # A cluster's node n is the Compose service kafka-n: its replica n here, as on the local runtime.
        found = {replica_index(s, c): c for s in members(service) for c in await self._containers(s)}
        if found and replica not in found:
            raise UnknownReplica(service, replica, sorted(found))
        target = found.get(replica)
        if target is None or target.status != "running":
            raise RuntimeFailure(f"{service}-{replica} is not running")
        await self.engine.kill_and_revive(target)

    def logs(self, service: str, *, tail: int = 100, follow: bool = False) -> AsyncIterator[LogLine]:
        """Every replica's lines, tagged by replica; following picks up new and restarted replicas."""
        self._check_service(service)
        return service_logs(self.engine, service, tail=tail, follow=follow)

    # -- pieces of the backend switch ------------------------------------------------------
    async def start_broker(self, backend: str, progress: Progress = no_progress) -> None:
        backend = check_backend(backend)
        await self._check_owner()
        await self._prepare_project(backend, progress, apps=False)
        services = list(BROKER_SERVICES[backend])
        profiles = await self._check_images(backend, services, progress)
        await self._check_ports(backend, services, profiles)
        progress(f"starting the {backend} broker")
        if self.for_project:  # the project's apps wait for its kafka-init: it pulls in kafka and zookeeper
            target = ["kafka-init", *(["kafka-ui"] if "ui" in profiles else [])] if backend == "kafka" else ["redis"]
        else:  # kafka-init waits until the apps are up (_topics_job)
            target = self._broker_services(backend, profiles)
        await self._compose(backend, "up", "-d", *target, progress=progress, profiles=profiles)
        await self._wait_ready(self._broker_running(backend), progress)

    async def stop_broker(self, backend: str, progress: Progress = no_progress) -> None:
        backend = check_backend(backend)
        found = [c for c in await self._containers() if service_of(c) in BROKER_SERVICES[backend]]
        if found:
            await self._check_owner()
            progress(f"stopping the {backend} broker")
            # Removed with its anonymous volumes (as `compose rm -s -f -v` did), so a graceful stop
            # flushes nothing anyone reads again: force-removing spares Kafka's 1-2 s shutdown.
            await self.engine.remove(found)

    async def stop_apps(self, progress: Progress = no_progress) -> None:
        backend = await self._require_backend()
        await self._check_owner()
        progress("stopping the api and workers")
        await self._compose(backend, "stop", "--timeout", "20", *self.app_services, progress=progress)

    async def start_apps(self, backend: str, progress: Progress = no_progress) -> None:
        backend = check_backend(backend)
        await self._check_owner()
        await self._prepare_project(backend, progress)
        await self._check_images(backend, self.app_services, progress)
        await self._check_ports(backend, self.app_services, [])
        scale = await self._worker_scale()
        self.config.record(backend, self.config.files(backend))
        progress(f"starting the api and workers on {backend}")
        await self._compose(backend, "up", "-d", *_scale_args(scale), *self.app_services, progress=progress,
                            profiles=self.config.profiles())
        await self._wait_ready(list(self.app_services), progress)
        await self._topics_job(backend, progress)

    def _broker_services(self, backend: str, profiles: list[str]) -> list[str]:
        """The broker's long-running services, Kafka UI with its profile; not the one-shot kafka-init."""
        return [*self._broker_running(backend), *(["kafka-ui"] if backend == "kafka" and "ui" in profiles else [])]

    async def _topics_job(self, backend: str, progress: Progress) -> None:
        """The guide's kafka-init, once the apps are ready: they lay out the same topics themselves
        (idempotently), so nothing waits for it, and its six `kafka-topics` JVMs no longer compete
        for the CPU with the apps starting (a project's own apps do wait for it: Compose runs it)."""
        if backend != "kafka" or self.for_project:
            return
        try:
            await self._compose(backend, "up", "-d", "--no-deps", "kafka-init", progress=progress,
                                profiles=self.config.profiles())
        except RuntimeFailure as exc:  # the stack runs: the api, ready, has laid out the same topics
            progress(f"kafka-init did not start ({exc}); the api has made the topics")

    # -- waiting -----------------------------------------------------------------------
    def _broker_running(self, backend: str) -> list[str]:
        """The broker services the chosen file runs (KRaft files have no ZooKeeper)."""
        if backend != "kafka" or self.for_project:
            return BROKER_RUNNING[backend]
        file = self.config.files(backend)[1]
        if "kraft" not in file:
            return BROKER_RUNNING[backend]
        return ["kafka", "kafka-2", "kafka-3"] if file.endswith(CLUSTER_FILE) else ["kafka"]

    async def _says_ready(self, service: str, container: Any) -> bool:
        """A sandbox app ready before its first healthcheck (readiness.py); a project's own workers wait for it."""
        if self.for_project:
            return False
        if service == "api":
            return await asyncio.to_thread(api_answers, self.config.port("API_HOST_PORT", 8000))
        return service in self.worker_services and await asyncio.to_thread(worker_said_ready, container)

    async def _wait_ready(self, services: list[str], progress: Progress, timeout: float = READY_TIMEOUT_S) -> None:
        """Every replica of `services` running and healthy (or said so); fails fast on a crash loop."""
        await wait_ready(self._containers, self._says_ready, services, progress, timeout)


def _scale_args(scale: dict[str, int]) -> list[str]:
    return [arg for service, n in scale.items() for arg in ("--scale", f"{service}={n}")]
