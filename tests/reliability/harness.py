"""The fault-injection harness: brokers that can be killed and restarted, worker
fleets that are killed and restarted like supervisor does, and an audit of
every response on the broker's own log (so duplicates are counted, not guessed).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.brokers.errors import BrokerError
from sandbox.brokers.kafka import KafkaSpec, wait_kafka_ready
from sandbox.brokers.ports import free_port, free_ports
from sandbox.brokers.redis_server import RedisSpec, wait_redis_ready
from sandbox.bus import Bus
from sandbox.config import Settings
from sandbox.protocol import (
    KAFKA_RESPONSES,
    REDIS_RESPONSES_STREAM,
    DecodeError,
    Response,
    decode_response,
)
from tests.procs import Proc, start_worker

# The agent every scenario runs: echoes, and fails in the ways the scenarios need.
AGENT_TEMPLATE = '''
import os

from sandbox.agents import agent, simulate


@agent(name="{name}", role="Reliability test agent", goal="Echo its inputs, fail on demand")
async def echo(inputs, ctx):
    if inputs.get("crash_worker"):  # kills whichever worker runs it
        os._exit(3)
    if inputs.get("raise"):  # a handler that always raises
        raise RuntimeError(inputs["raise"])
    flag = inputs.get("fail_while")  # raises while a file exists: "the tool is down"
    if flag and os.path.exists(flag):
        raise RuntimeError(f"tool down while {{flag}} exists")
    await simulate(inputs)
    return {{"i": inputs.get("i"), "delivery": ctx.delivery_count, "worker": ctx.worker_id}}
'''


def write_agent(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.py"
    path.write_text(AGENT_TEMPLATE.format(name=name))
    return path


# -- brokers -------------------------------------------------------------------


class Broker:
    """A real broker on fixed ports and a fixed data dir: kill -9 it, start it again."""

    def __init__(self, backend: str, workdir: Path):
        self.backend = backend
        self.workdir = workdir
        self.data = workdir / "data"
        if backend == "redis":
            self.spec: RedisSpec | KafkaSpec = RedisSpec(self.data, port=free_port())
        else:
            port, controller = free_ports(2)
            self.spec = KafkaSpec(self.data, port=port, controller_port=controller, partitions=2)
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def address(self) -> str:
        return self.spec.url if isinstance(self.spec, RedisSpec) else self.spec.bootstrap

    @property
    def out(self) -> Path:
        return self.workdir / f"{self.backend}.out"

    def start(self, timeout: float = 120.0) -> float:
        """Start (or restart) it on the same ports and data; returns seconds until it answered."""
        started = time.monotonic()
        self.spec.check_ports = self.starts == 0  # our own sockets may linger in TIME_WAIT
        argv, env = self.spec.prepare()
        with self.out.open("ab") as sink:
            self.proc = subprocess.Popen(
                argv, env=env, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=sink,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.starts += 1
        try:
            if self.backend == "redis":
                _run(wait_redis_ready(self.address, timeout))
            else:
                proc = self.proc
                _run(wait_kafka_ready(self.address, timeout, alive=lambda: proc.poll() is None))
        except BrokerError as exc:
            tail = "\n".join(self.out.read_text(errors="replace").splitlines()[-30:])
            self.kill()
            raise BrokerError(f"{exc}\n--- last lines of {self.backend} ---\n{tail}") from None
        return time.monotonic() - started

    def kill(self) -> None:
        """kill -9 the broker's whole process group, as a crash would."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            pass
        self.kill()


def _run(coro: Any) -> None:
    """Run a coroutine from sync code even inside a running loop (pytest-asyncio)."""
    from sandbox.brokers.testing import _run as run_in_thread

    run_in_thread(coro)


# -- workers -------------------------------------------------------------------


class Fleet:
    """N replicas of one agent's worker, restarted under the same name after a kill (like supervisor)."""

    def __init__(self, agent: str, settings: Settings, log_dir: Path, env: dict[str, str]):
        self.agent = agent
        self.settings = settings
        self.log_dir = log_dir
        self.env = env
        self.procs: dict[str, Proc] = {}
        self.retired: list[Proc] = []
        self.kills = 0
        self.incarnation: Counter[str] = Counter()

    def _start(self, name: str) -> Proc:
        self.incarnation[name] += 1
        proc = start_worker(self.agent, self.settings, self.log_dir, worker_id=name, **self.env)
        self.procs[name] = proc
        return proc

    def start(self, count: int, prefix: str = "w", wait: bool = True) -> list[str]:
        names = [f"{self.agent}_{prefix}{len(self.procs) + i + 1}" for i in range(count)]
        for name in names:
            self._start(name)
        if wait:
            self.wait_serving(names)
        return names

    def wait_serving(self, names: Iterable[str] | None = None, timeout: float = 90.0) -> None:
        for name in names or list(self.procs):
            self.procs[name].wait_for("serving agent", timeout)

    def kill9(self, name: str | None = None, restart: bool = True) -> str:
        name = name or random.choice(sorted(self.procs))
        proc = self.procs[name]
        proc.kill()
        self.kills += 1
        self.retired.append(proc)
        if restart:
            self._restart_after_kill(name, proc)
        return name

    def _restart_after_kill(self, name: str, dead: Proc) -> None:
        log = self.log_dir / f"{name}.log"
        old = log.with_suffix(f".{self.incarnation[name]}.log")
        log.rename(old)
        dead.log = old
        self._start(name)

    def revive(self) -> list[str]:
        """What supervisor does: start again every replica that died on its own."""
        revived = []
        for name, proc in list(self.procs.items()):
            if proc.popen.poll() is not None:
                self.retired.append(proc)
                self._restart_after_kill(name, proc)
                revived.append(name)
        return revived

    def signal(self, name: str, sig: int) -> None:
        self.procs[name].popen.send_signal(sig)

    def sigterm(self, name: str, timeout: float = 60.0) -> int:
        proc = self.procs.pop(name)
        self.retired.append(proc)
        return proc.terminate(timeout)

    def alive(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.popen.poll() is None]

    def output(self) -> str:
        return "\n".join(p.output() for p in [*self.retired, *self.procs.values()])

    def close(self) -> list[int]:
        codes = []
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.popen.send_signal(signal.SIGCONT)  # a scenario may have left one stopped
            try:
                codes.append(proc.terminate(60))
            except AssertionError:
                codes.append(-9)
        for proc in self.retired:
            proc.kill()
        self.procs.clear()
        return codes


# -- the audit: every response on the broker, counted per task ---------------


class ResponseLog:
    """Reads the broker's own log of responses from a mark on, counting per task_id.

    Redis: the capped `laddr:responses` stream (one entry per PUBLISH).
    Kafka: every partition of `laddr.responses`.
    Survives a broker restart: a failed read is retried on the next poll.
    """

    def __init__(self, bus: Bus):
        self.bus = bus
        self.counts: Counter[str] = Counter()
        self.first: dict[str, Response] = {}
        self.last: dict[str, Response] = {}
        self.max_delivery: dict[str, int] = {}
        self._redis_pos = "0-0"
        self._kafka: Any = None
        self._kafka_pos: dict[Any, int] = {}

    async def mark(self) -> ResponseLog:
        if self.bus.backend == "redis":
            newest = await self.bus.client.redis.xrevrange(REDIS_RESPONSES_STREAM, count=1)  # type: ignore[attr-defined]
            self._redis_pos = newest[0][0].decode() if newest else "0-0"
        else:
            bus: Any = self.bus
            await bus.ensure_topology([])  # laddr.responses exists before we follow it
            self._kafka = bus.client.consumer()
            await self._kafka.start()
            partitions = await bus.client.partitions(KAFKA_RESPONSES)
            self._kafka.assign(partitions)
            ends = await self._kafka.end_offsets(partitions)
            for tp in partitions:
                self._kafka.seek(tp, ends[tp])
                self._kafka_pos[tp] = ends[tp]
        return self

    async def close(self) -> None:
        if self._kafka is not None:
            await self._kafka.stop()
            self._kafka = None

    def _count(self, raw: bytes) -> None:
        try:
            response = decode_response(raw)
        except DecodeError:
            return
        self.counts[response.task_id] += 1
        self.first.setdefault(response.task_id, response)
        self.last[response.task_id] = response
        self.max_delivery[response.task_id] = max(
            self.max_delivery.get(response.task_id, 0), response.delivery_count or 1
        )

    async def poll(self) -> None:
        try:
            if self.bus.backend == "redis":
                client = self.bus.client.redis  # type: ignore[attr-defined]
                while True:
                    entries = await client.xrange(REDIS_RESPONSES_STREAM, min=f"({self._redis_pos}", max="+", count=5000)
                    if not entries:
                        return
                    for entry_id, fields in entries:
                        self._redis_pos = entry_id.decode()
                        self._count(fields.get(b"data", b""))
            else:
                batches = await self._kafka.getmany(timeout_ms=200, max_records=10_000)
                for records in batches.values():
                    for record in records:
                        self._count(record.value or b"")
        except Exception:  # the broker may be restarting: the next poll goes on where this one stopped
            await asyncio.sleep(0.2)

    async def wait_all(self, task_ids: Iterable[str], timeout: float, settle: float = 1.5) -> None:
        """Poll until every task has a response (or timeout), then a little longer for late duplicates."""
        wanted = set(task_ids)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await self.poll()
            if wanted <= set(self.counts):
                break
            await asyncio.sleep(0.3)
        end = time.monotonic() + settle
        while time.monotonic() < end:
            await self.poll()
            await asyncio.sleep(0.3)


@dataclass
class Outcome:
    """One scenario on one broker: what was sent, what came back."""

    scenario: str
    backend: str
    sent: int = 0
    answered: int = 0
    duplicated: int = 0  # tasks answered more than once
    lost: int = 0
    redelivered: int = 0  # tasks whose handler saw delivery_count > 1
    seconds: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)
    # lost by design: a configuration the scenario shows losing tasks (the guide's Redis, no persistence)
    loss_intended: bool = False

    @classmethod
    def measure(cls, scenario: str, backend: str, task_ids: Iterable[str], log: ResponseLog, started: float,
                **notes: Any) -> Outcome:
        ids = list(task_ids)
        answered = [t for t in ids if log.counts[t]]
        return cls(
            scenario=scenario,
            backend=backend,
            sent=len(ids),
            answered=len(answered),
            duplicated=sum(1 for t in ids if log.counts[t] > 1),
            lost=len(ids) - len(answered),
            redelivered=sum(1 for t in ids if log.max_delivery.get(t, 0) > 1),
            seconds=round(time.monotonic() - started, 1),
            notes=notes,
        )

    def line(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.notes.items())
        return (f"{self.scenario:<28} {self.backend:<6} sent={self.sent:<5} answered={self.answered:<5} "
                f"duplicated={self.duplicated:<4} lost={self.lost:<3} redelivered={self.redelivered:<4} "
                f"{self.seconds:>6.1f}s {extra}")
