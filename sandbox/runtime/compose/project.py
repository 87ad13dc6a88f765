"""`--runtime compose --project DIR`: the Laddr project's own docker-compose.yml, with the sandbox's layers.

    docker compose --project-directory DIR --env-file DIR/.env --env-file <state>/.env -p <name> \\
        -f DIR/docker-compose.yml -f <state>/<backend>.yml -f <state>/sandbox-<backend>.yml

  <backend>.yml          the migration as an override (sandbox/project/override.py): the guide's
                         Kafka services and every app pointed at Kafka, or the apps pointed at Redis
  sandbox-<backend>.yml  what makes it run here, offline: the project's image (project_image.py)
                         instead of `build: .`, each worker started through laddr_boot.py (Laddr's
                         NoOp LLM where no key is set), host ports on 127.0.0.1 picked free per
                         project, the sandbox's local broker images, the folder label, and the
                         services the sandbox does not need (minio, the dashboard…) left out

The user's files are not touched (unless they ran `migrate --write`): everything the sandbox
writes is in the state folder, <project>/.laddr-sandbox/compose (or $LADDR_STATE_DIR/compose/<name>).
Each project has its own Compose project name (the folder's name + a hash of its path, distinct
from the sandbox's own stack of that folder), so two projects never touch each other.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.tag import Tag

from sandbox.brokers.ports import free_ports
from sandbox.config import ConfigError, read_env_file, write_env
from sandbox.project import LaddrProject, ProjectError
from sandbox.project import kafka_services as ks
from sandbox.project.composefile import app_services
from sandbox.project.override import kafka_override, redis_override
from sandbox.project.workers import LLM_KEYS, noop_reason, project_env
from sandbox.project.yamlio import Document, dump_fragment, load_fragment, new_map, new_seq
from sandbox.runtime.compose.config import ROOT_LABEL, ROOT_VAR, ComposeConfig, outside_env, present_local_images
from sandbox.runtime.compose.config import project_name
from sandbox.runtime.local.statedir import STATE_ENV

PROJECT_IMAGE = "PROJECT_IMAGE"
LEFT_OUT_PROFILE = "laddr-sandbox-left-out"
BROKER_IMAGE_VARS = ("ZOOKEEPER_IMAGE", "KAFKA_IMAGE", "REDIS_IMAGE")
# Host ports this project's stack publishes on 127.0.0.1, picked free at its first `up`.
PORT_VARS = ("API_HOST_PORT", "REDIS_HOST_PORT", "KAFKA_HOST_PORT")
_MODULE = re.compile(r"-m\s+(agents\.[A-Za-z_][A-Za-z0-9_]*)((?:\s+\S+)*)")


def compose_project_name(root: Path) -> str:
    """Like the sandbox's per-folder name, but never the one of the sandbox's own stack there."""
    name = project_name(root)
    base, _, digest = name.rpartition("-")
    return f"{base}-laddr-{digest}"


class ProjectComposeConfig(ComposeConfig):
    """ComposeConfig for a Laddr project: its folder is the project directory, its files come first."""

    def __init__(self, project_dir: Path, *, project: str | None = None):
        try:
            self.laddr = LaddrProject.open(project_dir)
        except ProjectError as exc:
            raise ConfigError(str(exc)) from None
        self.root = self.dir = self.laddr.root
        self.kafka_brokers = 1  # a project's own file has one broker (ComposeConfig.__init__ is not run)
        self.project = project or compose_project_name(self.root)
        override = os.environ.get(STATE_ENV)
        self.state = (Path(override).expanduser().resolve() / "compose" / self.project if override
                      else self.laddr.state_dir / "compose")
        self.env_file = self.state / ".env"

    # -- what Compose reads ---------------------------------------------------------
    def env_files(self) -> list[Path]:
        """The project's .env first (its file's ${…} are the user's), the sandbox's state second."""
        return [f for f in (self.laddr.env_file, self.env_file) if f.is_file()]

    def values(self) -> dict[str, str]:
        try:
            values = read_env_file(self.env_file) if self.env_file.is_file() else {}
        except ConfigError as exc:
            raise ConfigError(f"{exc}: fix that line or remove {self.env_file}") from None
        return {**values, **outside_env()}

    def files(self, backend: str) -> list[str]:
        """The project's file, the migration override and the sandbox's layer (written now)."""
        theirs = self._their_services()
        left_out = self.left_out(theirs)
        broker = (kafka_override(self.laddr, ui_profile="ui", leave_out=left_out) if backend == "kafka"
                  else redis_override(self.laddr, leave_out=left_out))
        self.state.mkdir(parents=True, exist_ok=True)
        (self.state / ".gitignore").write_text("*\n")
        broker_file, layer_file = self.state / f"{backend}.yml", self.state / f"sandbox-{backend}.yml"
        _write_if_changed(broker_file, broker)
        _write_if_changed(layer_file, self.sandbox_layer(backend, theirs, load_fragment(broker)["services"]))
        return [str(self.laddr.compose_file), str(broker_file), str(layer_file)]

    def _their_services(self) -> CommentedMap:
        path = self.laddr.compose_file
        if not path.is_file():
            raise ConfigError(f"not a Laddr project for --runtime compose: {self.root} has no docker-compose.yml")
        try:
            doc = Document(path.read_text(encoding="utf-8", errors="replace"), str(path))
        except ProjectError as exc:
            raise ConfigError(str(exc)) from None
        services = doc.data.get("services") if isinstance(doc.data, CommentedMap) else None
        if not isinstance(services, CommentedMap):
            raise ConfigError(f"{path}: no `services:` mapping (not a Compose file)")
        return services

    def left_out(self, theirs: CommentedMap | None = None) -> tuple[str, ...]:
        """The project's services that are neither a broker nor an app (minio, the dashboard…)."""
        theirs = self._their_services() if theirs is None else theirs
        apps = set(app_services(theirs))
        return tuple(s for s in theirs if s not in apps and s not in ("redis", *ks.KAFKA_SERVICE_NAMES))

    def sandbox_layer(self, backend: str, theirs: CommentedMap, added: CommentedMap) -> str:
        label = new_map({ROOT_LABEL: f"${{{ROOT_VAR}:-}}"})
        out = new_map()
        image = f"${{{PROJECT_IMAGE}:?run laddr-sandbox up --runtime compose --project {self.root}}}"
        env = {**project_env(self.laddr.env_file), **{k: v for k, v in os.environ.items() if k in _llm_keys()}}
        apps = app_services(theirs)
        for name in [*theirs, *(s for s in added if s not in theirs)]:
            svc = new_map({"labels": new_map(dict(label))})
            ours = theirs.get(name) if name in theirs else added.get(name)
            if name in apps:
                svc["image"] = image
                svc["build"] = tagged_null("!reset")
                svc["pull_policy"] = "never"
                agent = _agent_of(self.laddr, name, ours)
                if agent is not None:
                    module, rest = _module_of(ours, agent.module)
                    svc["command"] = new_seq(["python", "/opt/laddr-sandbox/laddr_boot.py", module, *rest])
                    extra = {"AGENT_NAME": agent.name}
                    if noop_reason(agent.name, agent.path, env):
                        extra[f"LLM_BACKEND_{agent.name.upper()}"] = "noop"
                    svc["environment"] = new_map(extra)
                if name == "api" and ours.get("ports"):
                    svc["ports"] = _ports("API_HOST_PORT", 8000, ours)
            elif name == "redis":
                svc["image"] = f"${{REDIS_IMAGE:-{ours.get('image') or 'redis:7-alpine'}}}"
                svc["ports"] = _ports("REDIS_HOST_PORT", 6379, ours)
            elif name in self.left_out(theirs):
                svc["profiles"] = new_seq([LEFT_OUT_PROFILE])
            out[name] = svc
        # An agent of the project that its file has no service for: the whole service, as `laddr add agent` writes it.
        for agent in self.laddr.agents:
            if agent.worker_service in out:
                continue
            svc = new_map({"labels": new_map(dict(label)), "image": image, "pull_policy": "never",
                           "command": new_seq(["python", "/opt/laddr-sandbox/laddr_boot.py", agent.module]),
                           "working_dir": "/app", "volumes": new_seq([f"{self.root}:/app"])})
            if self.laddr.env_file.is_file():
                svc["env_file"] = ".env"
            extra = {"AGENT_NAME": agent.name, **ks.app_environment(backend)}
            if noop_reason(agent.name, agent.path, env):
                extra[f"LLM_BACKEND_{agent.name.upper()}"] = "noop"
            svc["environment"] = new_map(extra)
            svc["depends_on"] = new_map({k: new_map({"condition": v}) for k, v in ks.app_depends(backend).items()})
            out[agent.worker_service] = svc
        head = (f"# laddr-sandbox: how the Laddr project {self.root} runs here (offline images, laddr_boot.py,\n"
                f"# 127.0.0.1 ports, left out: {', '.join(self.left_out(theirs)) or 'nothing'}). Made anew on every command.\n")
        return head + dump_fragment(new_map({"services": out}))

    # -- images, ports, state ------------------------------------------------------------
    def image_vars(self, backend: str, services) -> list[str]:
        services = set(services)
        wanted = {PROJECT_IMAGE} if "api" in services or any(s.endswith("_worker") for s in services) else set()
        if backend == "kafka" and services & set(ks.KAFKA_SERVICE_NAMES):
            wanted |= {"KAFKA_IMAGE", "ZOOKEEPER_IMAGE"}
        if backend == "redis" and "redis" in services:
            wanted.add("REDIS_IMAGE")
        return sorted(wanted)

    def image(self, var: str) -> str:
        from sandbox.runtime.compose.config import DEFAULT_IMAGES

        value = self.values().get(var)
        if value:
            return value
        if var == "REDIS_IMAGE":
            return str(self._their_services().get("redis", {}).get("image") or "redis:7-alpine")
        return DEFAULT_IMAGES.get(var, var)

    def prepare(self, image: str) -> None:
        """The state's .env: this project's free host ports (picked once), the local broker images, its image."""
        self.state.mkdir(parents=True, exist_ok=True)
        values = read_env_file(self.env_file) if self.env_file.is_file() else {}
        updates: dict[str, str | None] = {PROJECT_IMAGE: image}
        missing = [v for v in PORT_VARS if not values.get(v)]
        for var, port in zip(missing, free_ports(len(missing))):
            updates[var] = str(port)
        for var, local in present_local_images().items():
            if var in BROKER_IMAGE_VARS and not values.get(var):
                updates[var] = local
        self.env_file.touch()
        write_env(self.env_file, updates)

    def record(self, backend: str, files: list[str]) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        self.env_file.touch()
        write_env(self.env_file, {"QUEUE_BACKEND": backend, "COMPOSE_PROJECT_NAME": self.project, ROOT_VAR: str(self.root)})
        # The same stack with the guide's plain commands: `$(cat <state>/compose-command) ps`
        argv = ["docker", "compose", "--project-directory", str(self.root),
                *(a for f in self.env_files() for a in ("--env-file", str(f))), "-p", self.project,
                *(a for f in files for a in ("-f", f))]
        (self.state / "compose-command").write_text(subprocess.list2cmdline(argv) + "\n")

    def recorded_backend(self) -> str | None:
        backend = self.values().get("QUEUE_BACKEND") if self.env_file.is_file() else None
        return backend if backend in ("kafka", "redis") else None

    def profiles(self) -> list[str]:
        return [p for p in self.values().get("COMPOSE_PROFILES", "").split(",") if p.strip() and p != LEFT_OUT_PROFILE]

    def llm_notes(self) -> dict[str, str]:
        env = {**project_env(self.laddr.env_file), **os.environ}
        notes = {}
        for agent in self.laddr.agents:
            reason = noop_reason(agent.name, agent.path, env)
            notes[agent.worker_service] = "Laddr worker" + (f"; NoOp LLM ({reason})" if reason else "")
        return notes


def tagged_null(tag: str) -> Any:
    """`!reset null`: Compose drops the key the project's file set (here `build: .`)."""
    return TaggedScalar(value="null", style=None, tag=tag)


def _agent_of(project: LaddrProject, service: str, svc: Any):
    if service.endswith("_worker"):
        for agent in project.agents:
            if agent.worker_service == service:
                return agent
    found = _MODULE.search(_command_text(svc))
    if found:
        return next((a for a in project.agents if a.module == found.group(1)), None)
    return None


def _command_text(svc: Any) -> str:
    command = svc.get("command") if isinstance(svc, CommentedMap) else None
    return " ".join(map(str, command)) if isinstance(command, (list, CommentedSeq)) else str(command or "")


def _module_of(svc: Any, default: str) -> tuple[str, list[str]]:
    """The `agents.<name>` the service's command runs with `-m`, and its arguments after it."""
    found = _MODULE.search(_command_text(svc))
    if not found:
        return default, []
    return found.group(1), found.group(2).split()


def _ports(var: str, default_target: int, svc: Any) -> Any:
    """The service's first published port, on 127.0.0.1 and the sandbox's host port: replaces the file's list."""
    target = default_target
    ports = svc.get("ports") if isinstance(svc, CommentedMap) else None
    if ports:
        first = str(ports[0]).split("/")[0]
        tail = first.rsplit(":", 1)[-1]
        target = int(tail) if tail.isdigit() else default_target
    seq = new_seq([f"127.0.0.1:${{{var}:-{default_target}}}:{target}"])
    seq.yaml_set_ctag(Tag(suffix="!override"))
    return seq


def _write_if_changed(path: Path, text: str) -> None:
    if not path.is_file() or path.read_text() != text:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)


def _llm_keys() -> set[str]:
    return {k for keys in LLM_KEYS.values() for k in keys}
