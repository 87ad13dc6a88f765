"""What the compose runtime reads: the compose folder, its .env, and the environment.

  LADDR_COMPOSE_DIR       folder of the compose files (default: ./compose, else the installed one)
  LADDR_COMPOSE_ENV_FILE  the .env Compose reads (default: <dir>/.env, made from .env.example)
  LADDR_COMPOSE_PROJECT   project name (default: derived from the sandbox's folder, see project_name)

Each sandbox folder has its own project, and every container carries the folder
in the label ROOT_LABEL, so one sandbox never reaches another one's stack.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import sandbox
from sandbox.config import ConfigError, Settings, check_backend, read_env_file, scale_from_env, write_env
from sandbox.runtime.base import HOST, RuntimeFailure
from sandbox.runtime.compose.defaults import DEFAULT_IMAGES

BASE_FILE = "docker-compose.yml"
BROKER_SERVICES = {"kafka": ("zookeeper", "kafka", "kafka-2", "kafka-3", "kafka-init", "kafka-ui"), "redis": ("redis",)}
CLUSTER_FILE = "docker-compose.kraft3.yml"  # KAFKA_BROKERS=3: nodes kafka, kafka-2, kafka-3
CLUSTER_NODES = ("kafka-2", "kafka-3")  # only in CLUSTER_FILE
BACKEND_FILES = {"kafka": ("docker-compose.kafka.yml", "docker-compose.kraft.yml", CLUSTER_FILE),
                 "redis": ("docker-compose.redis.yml",)}
CLUSTER_HOST_PORTS = (("KAFKA_HOST_PORT", 19092), ("KAFKA_2_HOST_PORT", 19094), ("KAFKA_3_HOST_PORT", 19096))
# In-network addresses the containers use (the host gets 127.0.0.1 ports instead).
IN_NETWORK = {"kafka": ("KAFKA_BOOTSTRAP", "kafka:9092"), "redis": ("REDIS_URL", "redis://redis:6379/0")}
# Host ports: variable, default, and the backend that publishes it (None: always).
HOST_PORTS = {"API_HOST_PORT": (8000, None), "KAFKA_HOST_PORT": (19092, "kafka"), "REDIS_HOST_PORT": (6379, "redis")}
UI_PORT = ("KAFKA_UI_HOST_PORT", 8080)
# Settings the compose .env owns: a stray export in the shell must not override them.
ENV_OWNED = ("QUEUE_BACKEND", "KAFKA_BOOTSTRAP", "REDIS_URL", "COMPOSE_FILE", "COMPOSE_PROJECT_NAME")
# The compose files label every container with ${LADDR_SANDBOX_ROOT}: the folder that started it.
ROOT_LABEL = "io.laddr-sandbox.root"
ROOT_VAR = "LADDR_SANDBOX_ROOT"


def project_name(folder: Path) -> str:
    """Compose's own default (the folder's name, sanitized) plus a short hash of the absolute
    path, so two folders of the same name differ and a folder keeps its name across runs."""
    folder = folder.resolve()
    base = re.sub(r"[^a-z0-9_-]", "", folder.name.lower()).lstrip("_-") or "sandbox"
    return f"{base[:40]}-{hashlib.sha256(str(folder).encode()).hexdigest()[:8]}"


# Where a wheel keeps a copy of compose/ (setup.py's build step copies it there).
PACKAGED_DIR = Path(sandbox.__file__).resolve().parent / "compose_files"


def compose_file(cwd: Path | None = None) -> Path | None:
    """compose/docker-compose.yml of the checkout here, else of the sandbox's checkout, else the
    copy installed with the package (a `pipx install`ed sandbox)."""
    for folder in ((cwd or Path.cwd()) / "compose", Path(sandbox.__file__).resolve().parent.parent / "compose",
                   PACKAGED_DIR):
        path = folder / BASE_FILE
        if path.is_file():
            return path
    return None


def is_packaged(folder: Path) -> bool:
    """Whether a compose folder is the installed copy (read-only to the sandbox: its .env lives elsewhere)."""
    return folder.resolve() == PACKAGED_DIR


def _state_env(root: Path) -> Path:
    from sandbox.runtime.local.statedir import state_dir

    return state_dir(root) / "compose" / ".env"


def present_local_images() -> dict[str, str]:
    """The *_IMAGE settings of the images scripts/setup-docker.sh builds, for those built here."""
    from sandbox.runtime.compose.images import image_label, local_image_env

    out = {}
    for var, image in local_image_env().items():
        try:
            if image_label(image) is not None:
                out[var] = image
        except Exception:  # noqa: BLE001 - no docker CLI: the compose files' defaults apply
            break
    return out


def outside_env() -> dict[str, str]:
    """The environment minus what the compose .env owns."""
    return {k: v for k, v in os.environ.items() if k not in ENV_OWNED}


class ComposeConfig:
    def __init__(self, compose_dir: Path | None = None, env_file: Path | None = None, project: str | None = None,
                 root: Path | None = None):
        self.root = (root or Path.cwd()).resolve()  # the sandbox's folder: the stack belongs to it
        found = compose_file(self.root)
        default_dir = found.parent if found else self.root / "compose"
        self.dir = Path(compose_dir or os.environ.get("LADDR_COMPOSE_DIR") or default_dir).resolve()
        # The installed copy is shared by every folder: its .env goes to this folder's state instead.
        default_env = _state_env(self.root) if is_packaged(self.dir) else self.dir / ".env"
        self.env_file = Path(env_file or os.environ.get("LADDR_COMPOSE_ENV_FILE") or default_env).resolve()
        self.project = project or os.environ.get("LADDR_COMPOSE_PROJECT") or project_name(self.root)
        self.kafka_brokers = 1  # the runtime sets the sandbox's KAFKA_BROKERS

    def values(self) -> dict[str, str]:
        """compose .env overlaid by the environment, as Compose itself resolves variables."""
        try:
            values = read_env_file(self.env_file)
        except ConfigError as exc:
            raise RuntimeFailure(f"{exc}: fix that line and retry") from None
        return {**values, **outside_env()}

    def env_files(self) -> list[Path]:
        """The --env-file(s) Compose reads, in order (later ones win)."""
        return [self.env_file] if self.env_file.is_file() else []

    def compose_env(self) -> dict[str, str]:
        """The environment a Compose command runs in: the folder for the label, never the shell's
        COMPOSE_* settings the .env owns."""
        return {**outside_env(), ROOT_VAR: str(self.root)}

    def port(self, var: str, default: int) -> int:
        raw = self.values().get(var) or str(default)
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            raise RuntimeFailure(f"{var} must be a port number, not {raw!r}: fix it in {self.env_file}")
        return int(raw)

    def files(self, backend: str) -> list[str]:
        """docker-compose.yml + the backend's file (the one COMPOSE_FILE names, if it names one)."""
        named = re.split(r"[:;]", self.values().get("COMPOSE_FILE", ""))
        chosen = next((f for f in named if Path(f).name in BACKEND_FILES[backend]), BACKEND_FILES[backend][0])
        if backend == "kafka" and self.kafka_brokers > 1:
            if self.kafka_brokers != 3:
                raise RuntimeFailure(f"the compose cluster has 3 nodes ({CLUSTER_FILE}), not {self.kafka_brokers}: "
                                     "set KAFKA_BROKERS to 1 or 3")
            chosen = CLUSTER_FILE
        elif Path(chosen).name == CLUSTER_FILE:  # KAFKA_BROKERS decides: back to one node (KRaft, as before)
            chosen = BACKEND_FILES["kafka"][1]
        files = [BASE_FILE, chosen]
        for f in files:
            if not (self.dir / f).is_file():
                raise RuntimeFailure(f"{self.dir / f} is missing: set LADDR_COMPOSE_DIR to the sandbox's compose folder")
        return files

    def image_vars(self, backend: str, services: Iterable[str]) -> list[str]:
        """The *_IMAGE settings these services of a backend run (Kafka UI's apart: it is optional)."""
        services = set(services)
        apps = "api" in services or any(s.endswith("_worker") for s in services)
        wanted = {"SANDBOX_IMAGE"} if apps else set()
        if backend == "kafka" and services & set(BROKER_SERVICES["kafka"]):
            kraft = "kraft" in self.files("kafka")[1]
            wanted |= {"KAFKA_IMAGE"} | (set() if kraft else {"ZOOKEEPER_IMAGE"})
        if backend == "redis" and "redis" in services:
            wanted.add("REDIS_IMAGE")
        return sorted(wanted)

    def image(self, var: str) -> str:
        return self.values().get(var) or DEFAULT_IMAGES[var]

    def recorded_backend(self) -> str | None:
        """The backend whose file COMPOSE_FILE names."""
        named = self.values().get("COMPOSE_FILE", "")
        return next((b for b, names in BACKEND_FILES.items() if any(n in named for n in names)), None)

    def profiles(self) -> list[str]:
        return [p for p in self.values().get("COMPOSE_PROFILES", "").split(",") if p.strip()]

    def pinned_scale(self, agents: tuple[str, ...] | None = None) -> dict[str, int]:
        try:
            return scale_from_env(self.values(), *([agents] if agents else []))
        except ConfigError as exc:
            raise RuntimeFailure(f"{exc}: fix it in {self.env_file}") from None

    def host_settings(self, settings: Settings, backend: str) -> Settings:
        """Settings with the addresses a client on this machine uses (the published ports)."""
        return replace(
            settings,
            queue_backend=check_backend(backend),
            kafka_bootstrap=(",".join(f"{HOST}:{self.port(var, port)}" for var, port in CLUSTER_HOST_PORTS)
                             if backend == "kafka" and self.kafka_brokers > 1
                             else f"{HOST}:{self.port('KAFKA_HOST_PORT', 19092)}"),
            redis_url=f"redis://{HOST}:{self.port('REDIS_HOST_PORT', 6379)}/0",
            api_host=HOST,
            api_port=self.port("API_HOST_PORT", 8000),
        )

    def ensure_env_file(self) -> None:
        if not self.env_file.exists():
            example = self.dir / ".env.example"
            self.env_file.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(example, self.env_file) if example.exists() else self.env_file.touch()
            if is_packaged(self.dir):  # no setup-docker.sh wrote it: use the local images that are here
                write_env(self.env_file, present_local_images())

    def record(self, backend: str, files: list[str]) -> None:
        """What the stack runs on, in compose/.env (the guide's `.env` edits)."""
        self.ensure_env_file()
        key, address = IN_NETWORK[backend]
        if Path(files[-1]).name == CLUSTER_FILE:  # every node, so a container (re)started while node 1 is down still connects
            address = ",".join(f"{n}:9092" for n in ("kafka", *CLUSTER_NODES))
        # the project and folder too, so the guide's plain `docker compose …` here reach this same stack
        write_env(self.env_file, {"COMPOSE_FILE": ":".join(files), "QUEUE_BACKEND": backend, key: address,
                                  "COMPOSE_PROJECT_NAME": self.project, ROOT_VAR: str(self.root)})
