"""What the benchmarks share in one run: options, the local stack, throwaway brokers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.brokers.testing import running_kafka, running_redis
from sandbox.config import Settings
from sandbox.switch import switch_backend

from .stack import WorkerSet, finish_local, make_local, settings_for

log = logging.getLogger("bench")


@dataclass
class Options:
    smoke: bool = False
    repeats: int = 5
    only: list[str] = field(default_factory=list)
    backends: list[str] = field(default_factory=lambda: ["redis", "kafka"])
    quiet: bool = False

    def n(self, full: int, smoke: int) -> int:
        return smoke if self.smoke else full


def say(text: str) -> None:
    """Progress for people, on stderr, so stdout holds only the tables."""
    import sys

    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class Context:
    def __init__(self, options: Options):
        self.options = options
        self.exits = contextlib.ExitStack()
        self.root = Path(tempfile.mkdtemp(prefix="lsb-", dir="/tmp"))
        self.exits.callback(__import__("shutil").rmtree, self.root, True)
        self._local: Any = None
        self._local_backend: str | None = None
        self._dedicated: dict[str, tuple[Settings, WorkerSet]] = {}

    # -- the local stack (shared by round trip, throughput, tap) -----------------
    async def local_on(self, backend: str) -> Settings:
        """The shared local stack, on `backend` (a switch keeps the other broker warm)."""
        if self._local is None:
            runtime = make_local(self.root / "shared")
            say(f"starting the local stack on {backend} (laddr-sandbox up)")
            try:
                await runtime.up(backend)
            except BaseException:
                await finish_local(runtime)
                raise
            self._local, self._local_backend = runtime, backend
        elif self._local_backend != backend:
            say(f"switching the local stack to {backend}")
            await switch_backend(self._local, backend, force=True, keep_old=True)
            self._local_backend = backend
        return self._local.bus_settings(backend)

    @property
    def local(self) -> Any:
        return self._local

    # -- dedicated brokers with their own five workers ------------------------------
    async def dedicated(self, key: str, backend: str, **kafka_props: str) -> tuple[Settings, WorkerSet]:
        """A throwaway broker (fresh topics) started by the sandbox's launcher, with the five workers."""
        if key in self._dedicated:
            return self._dedicated[key]
        say(f"starting a throwaway {backend} broker '{key}' {kafka_props or ''}")
        if backend == "redis":
            address = await asyncio.to_thread(self.exits.enter_context, running_redis())
        else:
            cm = running_kafka(extra_properties=dict(kafka_props) or None)
            address = await asyncio.to_thread(self.exits.enter_context, cm)
        settings = settings_for(backend, address)
        from sandbox.bus import make_bus

        bus = make_bus(settings)
        async with bus:
            from sandbox.protocol import AGENTS

            await bus.ensure_topology(AGENTS)
        workers = WorkerSet(settings, self.root / key / "logs")
        self.exits.callback(workers.stop)  # runs before the broker stops (LIFO)
        await workers.start()
        self._dedicated[key] = (settings, workers)
        return settings, workers

    async def close(self) -> None:
        if self._local is not None:
            say("stopping the local stack")
            await finish_local(self._local)
            self._local = None
        await asyncio.to_thread(self.exits.close)
