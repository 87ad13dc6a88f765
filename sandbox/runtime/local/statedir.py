"""The project-local state folder of the local runtime (`.laddr-sandbox/`).

It holds the supervisord config, its socket and pid file, the brokers' data,
one log file per replica and `state.json`: the ports chosen for this folder
(so two sandboxes on one machine never collide) and the current backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE_ENV = "LADDR_STATE_DIR"
DEFAULT_NAME = ".laddr-sandbox"
# sun_path is 108 bytes on Linux (104 on macOS): longer socket paths go to /tmp.
MAX_SOCKET_PATH = 100


def state_dir(cwd: Path | None = None) -> Path:
    override = os.environ.get(STATE_ENV)
    if override:
        return Path(override).expanduser().resolve()
    return ((cwd or Path.cwd()) / DEFAULT_NAME).resolve()


@dataclass
class State:
    """What survives between CLI calls; everything else is asked of supervisord."""

    backend: str | None = None  # the backend the apps run on, None before the first up
    project_dir: str = ""
    ports: dict[str, int] = field(default_factory=dict)  # redis, kafka, kafka_controller, api
    scale: dict[str, int] = field(default_factory=dict)  # worker service -> replicas
    kafka_brokers: int = 1  # the nodes of the local Kafka as last started
    started_at: float | None = None


class StateDir:
    def __init__(self, root: Path):
        self.root = root
        self.conf = root / "supervisord.conf"
        self.programs = root / "conf.d"  # one <program>.conf each
        self.logs = root / "logs"
        self.data = root / "data"  # the brokers' storage
        self.pidfile = root / "supervisord.pid"
        self.supervisord_log = self.logs / "supervisord.log"
        self.state_file = root / "state.json"

    # -- paths ------------------------------------------------------------------
    @property
    def socket(self) -> Path:
        path = self.root / "supervisor.sock"
        if len(str(path)) <= MAX_SOCKET_PATH:
            return path
        digest = hashlib.sha1(str(self.root).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"laddr-sandbox-{digest}.sock"

    def log_file(self, replica: str) -> Path:
        return self.logs / f"{replica}.log"

    def create(self) -> None:
        for d in (self.root, self.programs, self.logs, self.data):
            d.mkdir(parents=True, exist_ok=True)
        ignore = self.root / ".gitignore"
        if not ignore.exists():  # keep sockets, logs and broker data out of the user's repo
            ignore.write_text("*\n")

    # -- state.json -------------------------------------------------------------
    def load(self) -> State:
        try:
            doc = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return State()
        known = State.__dataclass_fields__
        return State(**{k: v for k, v in doc.items() if k in known})

    def save(self, state: State) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(state), indent=2, sort_keys=True))
        os.replace(tmp, self.state_file)  # atomic: a reader never sees half a file

    # -- one changer at a time ----------------------------------------------------
    @contextlib.asynccontextmanager
    async def locked(self, timeout: float = 600.0) -> AsyncIterator[None]:
        """Serialise up/down/scale from several shells on the same folder."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / "lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if loop.time() > deadline:
                        raise TimeoutError(f"another laddr-sandbox command holds {self.root / 'lock'}") from None
                    await asyncio.sleep(0.1)
            yield
        finally:
            os.close(fd)  # closing releases the lock
