"""Throwaway real brokers for tests and benchmarks.

    with running_redis() as url: ...          # redis://127.0.0.1:<port>/0
    with running_kafka() as bootstrap: ...    # 127.0.0.1:<port>
    with running_kafka_cluster(3) as (bootstrap, cluster): ...  # all nodes; cluster.kill(2)

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
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import BrokerError
from .kafka import KafkaSpec, find_java, wait_kafka_ready
from .kafka_cluster import KafkaClusterSpec, wait_kafka_cluster_ready
from .kafka_jars import ensure_kafka_jars
from .kafka_wire import kafka_metadata, kafka_quorum
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


def _spawn(name: str, argv: list[str], env: dict[str, str], workdir: Path) -> tuple[subprocess.Popen, Path]:
    """Start a broker in its own process group; its output appended to workdir/<name>.out."""
    out = workdir / f"{name}.out"
    with out.open("ab") as sink:
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed as one
        )
    return proc, out


@contextmanager
def _broker(name: str, argv: list[str], env: dict[str, str], workdir: Path) -> Iterator[tuple[subprocess.Popen, Path]]:
    proc, out = _spawn(name, argv, env, workdir)
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


class KafkaCluster:
    """A running test cluster: kill -9, stop and start its nodes; ask who leads what.

    Node ids are 1..N. `start`/`kill`/`stop` act at once (no waiting); the async
    `wait_ready` / `wait_in_sync` wait for the cluster to settle.
    """

    def __init__(self, spec: KafkaClusterSpec, workdir: Path) -> None:
        self.spec, self.workdir = spec, workdir
        self.java, self.jars = find_java(), ensure_kafka_jars()
        self.procs: dict[int, subprocess.Popen] = {}
        self.outputs: dict[int, Path] = {}
        self.down: set[int] = set()  # nodes killed or stopped on purpose

    @property
    def bootstrap(self) -> str:
        return self.spec.bootstrap

    def address(self, node: int) -> str:
        return f"{self.spec.host}:{self.spec.ports[node - 1]}"

    def alive(self, node: int) -> bool:
        proc = self.procs.get(node)
        return proc is not None and proc.poll() is None

    def alive_nodes(self) -> list[int]:
        return [n for n in self.spec.node_ids if self.alive(n)]

    def start(self, node: int) -> None:
        """Start a node's JVM (again); its storage is formatted only the first time."""
        if self.alive(node):
            return
        argv, env = self.spec.prepare_node(node, self.java, self.jars)
        self.down.discard(node)
        self.procs[node], self.outputs[node] = _spawn(f"kafka-{node}", argv, env, self.workdir)

    def kill(self, node: int) -> None:
        """SIGKILL the node's process group (no controlled shutdown) and reap it."""
        proc = self.procs.get(node)
        if proc is None:
            return
        self.down.add(node)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(30)

    def stop(self, node: int) -> None:
        """SIGTERM (Kafka's controlled shutdown), SIGKILL if it lingers."""
        if node in self.procs:
            self.down.add(node)
            _stop(self.procs[node])

    def stop_all(self, grace: float = 20.0) -> None:
        """SIGTERM every node at once (one by one, the last ones would wait for a lost quorum)."""
        self.down.update(self.procs)
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _stop(proc, grace=0)

    def tail(self, node: int, lines: int = 30) -> str:
        return _tail(self.outputs[node], lines) if node in self.outputs else "(never started)"

    async def metadata(self, timeout: float = 5.0) -> dict:
        """Metadata (brokers, topics' leaders/replicas/ISR) from the first alive node that answers."""
        return await self._ask(kafka_metadata, timeout)

    async def quorum(self, timeout: float = 5.0) -> dict:
        """The KRaft quorum as a broker sees it (leader_id = the active controller, -1 if none)."""
        return await self._ask(kafka_quorum, timeout)

    async def controller(self, timeout: float = 5.0) -> int:
        """Node id of the active controller (-1 while the quorum has no leader)."""
        return (await self.quorum(timeout))["leader_id"]

    async def partitions(self, topic: str) -> dict[int, dict]:
        """{partition: {"leader", "replicas", "isr", "error"}} of one topic (empty if unknown)."""
        return (await self.metadata())["topics"].get(topic, {})

    async def leaders(self, topic: str) -> dict[int, int]:
        return {p: info["leader"] for p, info in (await self.partitions(topic)).items()}

    async def _ask(self, request, timeout: float) -> dict:
        error: Exception = BrokerError("no Kafka node is alive")
        for node in self.alive_nodes():
            try:
                return await request(self.address(node), timeout)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, IndexError) as e:
                error = e
        raise BrokerError(f"no Kafka node answers ({type(error).__name__}: {error})")

    async def wait_ready(self, timeout: float = KAFKA_TIMEOUT) -> None:
        """Until every alive node answers, the metadata lists them all and the quorum has a leader."""
        nodes = self.alive_nodes()
        try:
            await wait_kafka_cluster_ready(
                [self.address(n) for n in nodes], nodes, timeout, alive=lambda: all(map(self.alive, nodes))
            )
        except BrokerError as e:
            shown = [n for n in nodes if not self.alive(n)] or nodes  # the dead ones, else all
            tails = "".join(f"\n--- last lines of Kafka node {n} ---\n{self.tail(n, 15)}" for n in shown)
            raise BrokerError(f"{e}{tails}") from None

    async def wait_in_sync(self, topics: list[str] | None = None, timeout: float = KAFKA_TIMEOUT) -> None:
        """Until every partition (of `topics`, default all) has a leader and all its replicas in sync."""

        async def in_sync() -> bool:
            meta = await self.metadata()
            names = topics if topics is not None else list(meta["topics"])
            return all(
                meta["topics"].get(t)
                and all(p["leader"] >= 0 and set(p["isr"]) == set(p["replicas"]) for p in meta["topics"][t].values())
                for t in names
            )

        await self._settle(time.monotonic() + timeout, f"all replicas in sync ({topics or 'all topics'})", in_sync)

    async def _settle(self, deadline: float, what: str, check) -> None:
        error: Exception | None = None
        while time.monotonic() < deadline:
            dead = [n for n in self.procs if not self.alive(n) and n not in self.down]
            if dead:
                n = dead[0]
                raise BrokerError(f"Kafka node {n} exited ({self.procs[n].returncode}):\n{self.tail(n)}")
            try:
                if await check():
                    return
            except BrokerError as e:
                error = e
            await asyncio.sleep(0.2)
        raise BrokerError(f"Kafka cluster: gave up waiting for {what} ({error or 'not yet'})")


@contextmanager
def running_kafka_cluster(
    nodes: int = 3,
    timeout: float = KAFKA_TIMEOUT * 2,
    partitions: int = 6,
    data_dir: Path | None = None,
    extra_properties: dict[str, str] | None = None,
) -> Iterator[tuple[str, KafkaCluster]]:
    """A real N-node KRaft cluster on free ports for the block; yields (bootstrap of all nodes, handle)."""
    with _workdir(data_dir, "laddr-kafka-cluster-") as (workdir, data):
        ports = free_ports(2 * nodes)
        spec = KafkaClusterSpec(
            data, nodes=nodes, ports=ports[:nodes], controller_ports=ports[nodes:],
            partitions=partitions, extra_properties=extra_properties,
        )
        cluster = KafkaCluster(spec, workdir)
        try:
            for node in spec.node_ids:
                cluster.start(node)
            log.info("starting a %d-node Kafka cluster on %s…", nodes, spec.bootstrap)
            _run(cluster.wait_ready(timeout))
            log.info("Kafka cluster ready on %s", spec.bootstrap)
            yield spec.bootstrap, cluster
        finally:
            cluster.stop_all()
