"""Run one real Apache Kafka broker (KRaft, combined broker+controller) from the cached jars.

`KafkaSpec(...).prepare()` writes the config, formats the storage once and
returns the argv/env of a foreground JVM for a process supervisor to run.
A spec is also one node of a cluster (`kafka_cluster.KafkaClusterSpec` sets
node_id, quorum_voters, cluster_id and the replication settings).
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import struct
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from .errors import BrokerError
from .kafka_jars import classpath, ensure_kafka_jars
from .kafka_wire import kafka_metadata
from .ports import ensure_port_free

# G1 with Kafka's own pause targets (kafka-run-class.sh). Measured JVM start to
# ready (median of 3, 2 cores): G1 1.9 s, Serial GC 1.7 s, G1 without CDS 2.3 s;
# 0.2 s is not worth Serial's long pauses. -Xshare:auto keeps the JDK's CDS archive.
def jvm_opts(heap: tuple[str, str] = ("256m", "512m")) -> list[str]:
    """The broker JVM's options; `heap` is (initial, maximum), e.g. ("128m", "384m")."""
    return [f"-Xms{heap[0]}", f"-Xmx{heap[1]}", *_GC_OPTS]


_GC_OPTS = [
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Xshare:auto",
    "-Djava.awt.headless=true",
]
JVM_OPTS = jvm_opts()
# Short-lived CLI tools: start fast, throughput does not matter.
TOOL_JVM_OPTS = ["-Xms32m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xshare:auto"]

# Broker logs go to stdout (the supervisor keeps them) at INFO, minus chatty internals.
BROKER_LOG4J = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.Target=System.out
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaConfig=WARN
log4j.logger.org.apache.kafka.common.config=WARN
log4j.logger.kafka.server.DelayedOperationPurgatory$ExpiredOperationReaper=WARN
log4j.logger.kafka.server.ClientQuotaManager$ThrottledChannelReaper=WARN
log4j.logger.kafka.server.NodeToControllerRequestThread=WARN
log4j.logger.kafka.server.NodeToControllerChannelManagerImpl=WARN
log4j.logger.org.apache.kafka.image=WARN
log4j.logger.org.apache.kafka.queue=WARN
log4j.logger.org.apache.kafka.raft=WARN
log4j.logger.kafka.raft=WARN
log4j.logger.org.apache.kafka.server.util=WARN
log4j.logger.kafka.log=WARN
log4j.logger.kafka.cluster=WARN
log4j.logger.kafka.network=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.request.logger=WARN
log4j.logger.org.apache.kafka.storage=WARN
log4j.logger.org.apache.kafka.controller.ReplicationControlManager=WARN
log4j.logger.org.apache.kafka.controller.ConfigurationControlManager=WARN
log4j.logger.kafka.coordinator.group.GroupMetadataManager=WARN
log4j.logger.kafka.server.ReplicaFetcherManager=WARN
log4j.logger.kafka.server.ReplicaAlterLogDirsManager=WARN
"""
# Tools print their answer on stdout; only their warnings go to stderr.
TOOLS_LOG4J = """\
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=%p %m (%c)%n
"""


@cache
def find_java() -> str:
    """Path of a Java 17+ `java` from $JAVA_HOME or PATH, else BrokerError."""
    candidates = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"))
    if found := shutil.which("java"):
        candidates.append(found)
    seen = []
    for java in candidates:
        version = _java_major(java)
        if version and version >= 17:
            return java
        seen.append(f"{java} is Java {version or '?'}")
    hint = f" ({'; '.join(seen)})" if seen else ""
    raise BrokerError(f"no Java 17+ found{hint}: install openjdk-17-jre-headless or set JAVA_HOME")


def _java_major(java: str) -> int | None:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


def _log4j_file(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    if not path.exists() or path.read_text() != text:
        # tmp + rename: several processes may write it at once
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    return path


def new_cluster_id() -> str:
    # Kafka's Uuid.toString(): url-safe base64 of 16 random bytes, unpadded,
    # never starting with "-" (it would look like a CLI flag).
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def replication_properties(replication_factor: int = 1, min_insync_replicas: int = 1) -> dict[str, int]:
    """How many copies every topic (also the offsets and transaction logs) keeps, and how many
    must have a write before acks=all answers. One broker: 1 and 1; three: 3 and 2."""
    return {
        "default.replication.factor": replication_factor,
        "min.insync.replicas": min_insync_replicas,
        "offsets.topic.replication.factor": replication_factor,
        "transaction.state.log.replication.factor": replication_factor,
        "transaction.state.log.min.isr": min_insync_replicas,
    }


@dataclass
class KafkaSpec:
    data_dir: Path
    port: int = 9092
    controller_port: int = 9093
    host: str = "127.0.0.1"
    partitions: int = 6
    check_ports: bool = True
    # server.properties entries that override (or add to) the sandbox's own,
    # e.g. {"group.initial.rebalance.delay.ms": "3000"} for Kafka's default.
    extra_properties: dict[str, str] | None = None
    # One node of a cluster (see kafka_cluster.KafkaClusterSpec): its id, all voters
    # ("1@host:port,2@host:port,..."; default this node alone) and the shared cluster id
    # (default: made up once and kept in data_dir/cluster-id).
    node_id: int = 1
    quorum_voters: str | None = None
    cluster_id: str | None = None
    # Topics (also the internal ones) get this many replicas; acks=all needs min_insync_replicas.
    replication_factor: int = 1
    min_insync_replicas: int = 1
    heap: tuple[str, str] = ("256m", "512m")  # JVM -Xms, -Xmx

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def server_properties(self) -> str:
        h = self.host
        props = {
            "process.roles": "broker,controller",
            "node.id": self.node_id,
            "controller.quorum.voters": self.quorum_voters or f"{self.node_id}@{h}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{h}:{self.port},CONTROLLER://{h}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{h}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": self.log_dir,
            "num.partitions": self.partitions,
            "auto.create.topics.enable": "true",
            **replication_properties(self.replication_factor, self.min_insync_replicas),
            "offsets.topic.num.partitions": 6,  # default 50 slows the first consumer group
            "transaction.state.log.num.partitions": 4,
            "group.initial.rebalance.delay.ms": 0,  # consumers join at once in a sandbox
            # Laptop-sized: 2 cores, small segments, a day or 256 MiB per partition.
            "num.network.threads": 2,
            "num.io.threads": 4,
            "num.recovery.threads.per.data.dir": 1,
            "log.segment.bytes": 16 * 1024 * 1024,
            "log.index.size.max.bytes": 1024 * 1024,
            "log.retention.hours": 24,
            "log.retention.bytes": 256 * 1024 * 1024,
            "log.retention.check.interval.ms": 60_000,
            "log.cleaner.dedupe.buffer.size": 16 * 1024 * 1024,  # default 128 MiB of a 512 MiB heap
        }
        props.update(self.extra_properties or {})
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def prepare(self, java: str | None = None, jars: Path | None = None) -> tuple[list[str], dict[str, str]]:
        """Write the config, format the storage once; return (argv, env) of the foreground broker."""
        if self.check_ports:
            ensure_port_free(self.port, self.host, "Kafka")
            ensure_port_free(self.controller_port, self.host, "the Kafka controller")
        java = java or find_java()
        jars = jars or ensure_kafka_jars()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "server.properties"
        config.write_text(self.server_properties())
        log4j = _log4j_file(self.data_dir, "log4j.properties", BROKER_LOG4J)
        self._format(java, jars, config)
        argv = [
            java,
            *jvm_opts(self.heap),
            f"-Dlog4j.configuration=file:{log4j}",
            "-cp",
            classpath(jars),
            "kafka.Kafka",
            str(config),
        ]
        env = dict(os.environ)
        env.pop("CLASSPATH", None)  # the jar folder is the whole classpath
        return argv, env

    def _format(self, java: str, jars: Path, config: Path) -> None:
        if (self.log_dir / "meta.properties").exists():
            return  # formatted before: keep the data
        id_file = self.data_dir / "cluster-id"
        if self.cluster_id:
            id_file.write_text(self.cluster_id + "\n")
        elif not id_file.exists():
            id_file.write_text(new_cluster_id() + "\n")
        tools_log4j = _log4j_file(jars, "tools-log4j.properties", TOOLS_LOG4J)
        argv = [
            java,
            *TOOL_JVM_OPTS,
            f"-Dlog4j.configuration=file:{tools_log4j}",
            "-cp",
            classpath(jars),
            "kafka.tools.StorageTool",
            "format",
            "--ignore-formatted",
            "-t",
            id_file.read_text().strip(),
            "-c",
            str(config),
        ]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        except subprocess.TimeoutExpired as e:
            raise BrokerError(
                f"formatting Kafka storage in {self.log_dir} hung for 120s: delete {self.data_dir} and retry"
            ) from e
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise BrokerError(
                f"formatting Kafka storage in {self.log_dir} failed ({' | '.join(tail)}): delete {self.data_dir} and retry"
            )


def topics_argv(bootstrap: str, *args: str, jars: Path | None = None) -> list[str]:
    """argv of `kafka-topics.sh --bootstrap-server <bootstrap> <args>` from the cached jars."""
    jars = jars or ensure_kafka_jars()
    tools_log4j = _log4j_file(jars, "tools-log4j.properties", TOOLS_LOG4J)
    return [
        find_java(),
        *TOOL_JVM_OPTS,
        f"-Dlog4j.configuration=file:{tools_log4j}",
        "-cp",
        classpath(jars),
        "org.apache.kafka.tools.TopicCommand",
        "--bootstrap-server",
        bootstrap,
        *args,
    ]


async def wait_kafka_ready(
    bootstrap: str,
    timeout: float = 90.0,
    progress: Callable[[float], None] | None = None,
    alive: Callable[[], bool] | None = None,
) -> None:
    """Poll until the broker answers a Metadata request naming a broker and a controller.

    Calls progress(seconds_elapsed) about once a second; stops early with
    BrokerError when alive() says the broker process is gone.
    """
    start = time.monotonic()
    last_report = start
    error: Exception | None = None
    while (elapsed := time.monotonic() - start) < timeout:
        try:
            meta = await kafka_metadata(bootstrap, timeout=min(2.0, timeout - elapsed))
            if meta["brokers"] and meta["controller_id"] >= 0:
                return
            error = BrokerError("no broker or controller in the metadata yet")
        except (OSError, TimeoutError, asyncio.IncompleteReadError, struct.error, IndexError) as e:
            error = e
        if alive and not alive():
            raise BrokerError(f"Kafka at {bootstrap} exited while starting: see its log for the reason")
        if progress and time.monotonic() - last_report >= 1.0:
            last_report = time.monotonic()
            progress(last_report - start)
        await asyncio.sleep(0.1)
    raise BrokerError(
        f"Kafka at {bootstrap} not ready after {timeout:.0f}s ({type(error).__name__}: {error}): see its log"
    )
