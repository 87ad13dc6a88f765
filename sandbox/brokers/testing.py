"""Throwaway real brokers for tests and benchmarks.

    with running_redis() as url: ...          # redis://127.0.0.1:<port>/0
    with running_kafka() as bootstrap: ...    # 127.0.0.1:<port>

Each starts the broker as a subprocess in a temp dir on free ports, waits until
it answers, and on exit (also after an exception) kills its process group,
waits for it and removes the temp dir. They are plain (sync) context managers,
so they work in sync fixtures and from inside a running event loop alike.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import BrokerError
from .kafka import KafkaSpec, wait_kafka_ready
from .ports import free_port, free_ports
from .redis_server import RedisSpec, wait_redis_ready

log = logging.getLogger("sandbox.brokers")

KAFKA_TIMEOUT = 90.0
REDIS_TIMEOUT = 30.0


def _run(coro: Coroutine) -> None:
    """Run a coroutine to the end from sync code, even when an event loop is running here."""
    error: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coro)
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            error.append(e)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join()
    if error:
        raise error[0]


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


def _stop(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM the process group, SIGKILL it if it lingers, and reap it."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def _broker(name: str, argv: list[str], env: dict[str, str], workdir: Path) -> Iterator[tuple[subprocess.Popen, Path]]:
    out = workdir / f"{name}.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed as one
        )
    try:
        yield proc, out
    finally:
        _stop(proc)


@contextmanager
def _workdir(data_dir: Path | None, prefix: str) -> Iterator[tuple[Path, Path]]:
    """(workdir, data_dir): a temp dir removed at the end; data kept only if the caller gave its own."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield workdir, Path(data_dir) if data_dir else workdir / "data"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def running_redis(timeout: float = REDIS_TIMEOUT, data_dir: Path | None = None) -> Iterator[str]:
    """A real redis-server on a free port for the duration of the block; yields its URL."""
    with _workdir(data_dir, "laddr-redis-") as (workdir, data):
        spec = RedisSpec(data, port=free_port())
        argv, env = spec.prepare()
        with _broker("redis", argv, env, workdir) as (proc, out):
            try:
                _run(wait_redis_ready(spec.url, timeout))
            except BrokerError as e:
                raise BrokerError(
                    f"{e}\n--- last lines of redis-server (exit code {proc.poll()}) ---\n{_tail(out)}"
                ) from None
            yield spec.url


@contextmanager
def running_kafka(
    timeout: float = KAFKA_TIMEOUT,
    partitions: int = 6,
    data_dir: Path | None = None,
    extra_properties: dict[str, str] | None = None,
) -> Iterator[str]:
    """A real single-node KRaft Kafka on free ports for the duration of the block; yields its bootstrap.

    Pass `data_dir` to keep the broker's data after the block (e.g. to test a restart),
    `extra_properties` to override server.properties entries (e.g. Kafka's default
    group.initial.rebalance.delay.ms of 3000 instead of the sandbox's 0).
    """
    with _workdir(data_dir, "laddr-kafka-") as (workdir, data):
        port, controller_port = free_ports(2)
        spec = KafkaSpec(
            data, port=port, controller_port=controller_port, partitions=partitions, extra_properties=extra_properties
        )
        argv, env = spec.prepare()
        with _broker("kafka", argv, env, workdir) as (proc, out):
            log.info("starting Kafka JVM on %s…", spec.bootstrap)
            try:
                _run(
                    wait_kafka_ready(
                        spec.bootstrap,
                        timeout,
                        progress=lambda s: log.info("starting Kafka JVM… %.0fs", s),
                        alive=lambda: proc.poll() is None,
                    )
                )
            except BrokerError as e:
                raise BrokerError(f"{e}\n--- last lines of Kafka (exit code {proc.poll()}) ---\n{_tail(out)}") from None
            log.info("Kafka ready on %s", spec.bootstrap)
            yield spec.bootstrap
