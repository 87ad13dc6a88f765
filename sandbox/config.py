"""Settings from `.env` and the environment, with the migration guide's names.

`.env` is read and written with python-dotenv only. The process environment
wins over `.env`, so `QUEUE_BACKEND=redis python -m sandbox.worker researcher`
works without touching the file.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from dotenv import dotenv_values, set_key, unset_key
from dotenv.parser import parse_stream

from sandbox.protocol import AGENTS, BACKENDS

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_KAFKA_BOOTSTRAP = "127.0.0.1:9092"
SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "KEY")
MAX_REPLICAS = 64  # per worker service, on one machine
MAX_KAFKA_BROKERS = 5  # each node is a JVM of up to 384 MB
# A Laddr project's .env sets these for its own Compose stack; the sandbox's stack has its own.
PROJECT_OWNED = ("QUEUE_BACKEND", "REDIS_URL", "KAFKA_BOOTSTRAP", "API_HOST", "API_PORT")


class ConfigError(ValueError):
    """Bad configuration: the message says which setting and what to do."""


@dataclass(frozen=True)
class KafkaSecurity:
    """The usual client security settings, for brokers someone else runs."""

    protocol: str = "PLAINTEXT"  # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    sasl_mechanism: str | None = None  # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None


@dataclass(frozen=True)
class Settings:
    queue_backend: str = "redis"
    redis_url: str = DEFAULT_REDIS_URL
    kafka_bootstrap: str = DEFAULT_KAFKA_BOOTSTRAP
    kafka_partitions: int = 6
    kafka_brokers: int = 1  # the local/Compose stack's KRaft nodes: 3 shows replication and failover
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)
    agents_dir: Path | None = None  # None: the bundled agents_examples
    # A user's Laddr project (`laddr init`): its agents' own workers run instead of the examples.
    project: Path | None = None
    agents: tuple[str, ...] = AGENTS  # the stack's agents: the examples, or the project's
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_key: str | None = None
    worker_concurrency: int = 16
    # Redis: pending entries idle this long belong to a dead consumer and are
    # reclaimed; live workers refresh theirs, so long tasks are not stolen.
    claim_idle_ms: int = 15_000
    max_deliveries: int = 5
    heartbeat_s: float = 5.0
    env_file: Path | None = None
    notes: tuple[str, ...] = ()  # what people should know about where these settings came from

    @property
    def env_file_writable(self) -> bool:
        """Whether the sandbox may record its own settings in env_file (never in a project's .env)."""
        return self.env_file is not None and not is_project_folder(Path(self.env_file).resolve().parent)

    def with_backend(self, backend: str) -> Settings:
        return replace(self, queue_backend=check_backend(backend))

    @property
    def broker_address(self) -> str:
        return self.kafka_bootstrap if self.queue_backend == "kafka" else self.redis_url


def check_backend(value: str) -> str:
    value = (value or "").strip().lower()
    if value not in BACKENDS:
        raise ConfigError(f"QUEUE_BACKEND must be one of {', '.join(BACKENDS)}, not {value!r}")
    return value


def read_env_file(path: Path) -> dict[str, str]:
    """Values of a `.env` file; a line python-dotenv cannot parse is an error, not a warning."""
    if not path.exists():
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            line = binding.original.line
            raise ConfigError(f"{path}:{line}: malformed line {binding.original.string.strip()[:60]!r} (expected KEY=value)")
    return {k: v for k, v in dotenv_values(stream=io.StringIO(text)).items() if v is not None}


def _int(values: Mapping[str, str], name: str, default: int, low: int = 0, high: int = 1 << 31) -> int:
    raw = values.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, not {value}")
    return value


def check_redis_url(url: str) -> str:
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"REDIS_URL must start with redis://, rediss:// or unix://, not {url!r}")
    if url.startswith("unix://"):
        return url
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ConfigError(f"REDIS_URL has a port that is not a number from 1 to 65535: {url!r}") from None
    if not parts.hostname:
        raise ConfigError(f"REDIS_URL names no host: {url!r} (expected redis://host:port/db)")
    return url


def check_bootstrap(bootstrap: str) -> str:
    """host:port[,host:port]; a host may be a bracketed IPv6 address."""
    for part in bootstrap.split(","):
        host, _, port = part.strip().rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if not host or ":" in host and not part.strip().startswith("[") or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"KAFKA_BOOTSTRAP must be host:port[,host:port] with ports 1-65535, not {bootstrap!r}")
    return bootstrap


def load_settings(env_file: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from `.env` (LADDR_ENV_FILE or ./.env) overlaid by the environment."""
    environ = os.environ if environ is None else environ
    path = Path(env_file or environ.get("LADDR_ENV_FILE") or ".env")
    from_file, notes = read_sandbox_env(path)
    values: dict[str, str] = {**from_file, **{k: v for k, v in environ.items()}}
    redis_url = check_redis_url(values.get("REDIS_URL") or DEFAULT_REDIS_URL)
    bootstrap = check_bootstrap(values.get("KAFKA_BOOTSTRAP") or DEFAULT_KAFKA_BOOTSTRAP)
    check_scales(values)
    agents_dir = values.get("LADDR_AGENTS_DIR")
    project, agents, project_notes = _project(values.get("LADDR_PROJECT"))
    return Settings(
        queue_backend=check_backend(values.get("QUEUE_BACKEND") or "redis"),
        redis_url=redis_url,
        kafka_bootstrap=bootstrap,
        kafka_partitions=_int(values, "KAFKA_PARTITIONS", 6, 1, 1000),
        kafka_brokers=_int(values, "KAFKA_BROKERS", 1, 1, MAX_KAFKA_BROKERS),
        kafka_security=KafkaSecurity(
            protocol=(values.get("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").upper(),
            sasl_mechanism=values.get("KAFKA_SASL_MECHANISM") or None,
            sasl_username=values.get("KAFKA_SASL_USERNAME") or None,
            sasl_password=values.get("KAFKA_SASL_PASSWORD") or None,
            ssl_cafile=values.get("KAFKA_SSL_CAFILE") or None,
            ssl_certfile=values.get("KAFKA_SSL_CERTFILE") or None,
            ssl_keyfile=values.get("KAFKA_SSL_KEYFILE") or None,
        ),
        agents_dir=Path(agents_dir) if agents_dir else None,
        project=project,
        agents=agents,
        api_host=values.get("API_HOST") or "127.0.0.1",
        api_port=_int(values, "API_PORT", 8000, 1, 65535),
        api_key=values.get("LADDR_API_KEY") or None,
        worker_concurrency=_int(values, "WORKER_CONCURRENCY", 16, 1, 10_000),
        claim_idle_ms=_int(values, "LADDR_CLAIM_IDLE_MS", 15_000, 100),
        max_deliveries=_int(values, "LADDR_MAX_DELIVERIES", 5, 1, 1000),
        heartbeat_s=float(_int(values, "LADDR_HEARTBEAT_MS", 5000, 100)) / 1000.0,
        env_file=path,
        notes=tuple(dict.fromkeys((*notes, *project_notes))),
    )


def is_project_folder(folder: Path) -> bool:
    """A Laddr project's folder (`laddr init`): its .env is the project's, not the sandbox's."""
    return (folder / "laddr.yml").is_file() and (folder / "agents").is_dir()


def read_sandbox_env(path: Path) -> tuple[dict[str, str], tuple[str, ...]]:
    """The sandbox's settings in a `.env`, and notes. Of a Laddr project's .env, not the broker,
    api and backend settings it holds for its own Compose stack (compose hostnames, 0.0.0.0)."""
    values = read_env_file(path)
    if not is_project_folder(Path(path).resolve().parent):
        return values, ()
    ignored = [k for k in PROJECT_OWNED if values.get(k)]
    kept = {k: v for k, v in values.items() if k not in PROJECT_OWNED}
    kept.setdefault("LADDR_PROJECT", str(Path(path).resolve().parent))
    notes = (f"{path} is the Laddr project's own .env: its {', '.join(ignored)} are for its Compose stack; "
             "the sandbox runs its own broker and api on 127.0.0.1",) if ignored else ()
    return kept, notes


def check_scales(values: Mapping[str, str]) -> None:
    """Every SCALE_<AGENT>_WORKER set anywhere must be a replica count, even for agents not running."""
    for key in values:
        if key.startswith("SCALE_") and key.endswith("_WORKER"):
            _int(values, key, 1, 0, MAX_REPLICAS)


def _project(folder: str | None) -> tuple[Path | None, tuple[str, ...], tuple[str, ...]]:
    """The project's folder, its agents, and what to say about its .env."""
    if not folder:
        return None, AGENTS, ()
    from sandbox.project import LaddrProject, ProjectError

    try:
        project = LaddrProject.open(folder)
    except ProjectError as exc:
        raise ConfigError(f"LADDR_PROJECT: {exc}") from None
    _, notes = read_sandbox_env(project.env_file)
    return project.root, project.agent_names, notes


def with_project(settings: Settings, folder: str | Path | None) -> Settings:
    """Settings for `--project DIR` (None keeps what .env / LADDR_PROJECT said)."""
    if folder is None:
        return settings
    project, agents, notes = _project(str(folder))
    return replace(settings, project=project, agents=agents, notes=tuple(dict.fromkeys((*settings.notes, *notes))))


def scale_from_env(values: Mapping[str, str], agents: tuple[str, ...] = AGENTS) -> dict[str, int]:
    """Per-service replica counts: `SCALE_RESEARCHER_WORKER=3`."""
    scale = {}
    for agent in agents:
        scale[f"{agent}_worker"] = _int(values, f"SCALE_{agent.upper()}_WORKER", 1, 0, MAX_REPLICAS)
    return scale


def write_env(path: Path, updates: Mapping[str, str | None]) -> None:
    """Set (or with None, remove) keys in `.env`, keeping the rest of the file."""
    read_env_file(path)  # refuse to rewrite a file we cannot parse
    path.touch(exist_ok=True)
    for key, value in updates.items():
        if value is None:
            unset_key(str(path), key, quote_mode="never")
        else:
            set_key(str(path), key, value, quote_mode="never")


def mask(key: str, value: str) -> str:
    """Hide secrets wherever configuration is shown."""
    if any(word in key.upper() for word in SECRET_WORDS) and value:
        return "****"
    if "://" in value and "@" in value:  # credentials inside a URL
        scheme, rest = value.split("://", 1)
        return f"{scheme}://****@{rest.split('@', 1)[1]}"
    return value
