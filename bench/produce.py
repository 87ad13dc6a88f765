"""Fast producers for the tap benchmark: they must outrun the tap, so no client library.

Redis: pre-encoded XADD commands written straight to a socket in pipelined
batches (`python -m bench.produce redis URL STREAM TOTAL RATE`). Kafka: the
broker's own Java ProducerPerformance from the cached jars (`kafka_argv`).
RATE 0 = as fast as possible; otherwise batches are paced to that rate.
"""

from __future__ import annotations

import socket
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import orjson

BATCH = 500


def task_json(agent: str, n: int) -> bytes:
    return orjson.dumps({
        "task_id": f"{uuid.UUID(int=n)}",
        "agent_name": agent,
        "payload": {"query": f"tap benchmark message {n}", "simulate": {"delay_ms": 0}},
        "created_at": time.time(),
    })


def _bulk(b: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(b), b)


def xadd_command(stream: str, data: bytes) -> bytes:
    return b"*5\r\n" + _bulk(b"XADD") + _bulk(stream.encode()) + _bulk(b"*") + _bulk(b"data") + _bulk(data)


def produce_redis(url: str, stream: str, agent: str, total: int, rate: float) -> float:
    """Send `total` XADDs; returns the messages/s achieved."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    db = (parts.path or "/0").strip("/") or "0"
    if db != "0":
        sock.sendall(b"*2\r\n$6\r\nSELECT\r\n" + _bulk(db.encode()))
        sock.recv(64)
    sock.settimeout(60)
    started = time.perf_counter()
    sent = 0
    owed = 0  # CRLFs of replies not read yet: each reply ("$15\r\n<id>\r\n") has two
    carry = b""

    def read_some() -> None:
        nonlocal owed, carry
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("Redis closed the connection")
        data = carry + chunk
        owed -= data.count(b"\r\n")
        carry = b"\r" if data.endswith(b"\r") else b""

    while sent < total:
        n = min(BATCH, total - sent)
        payload = b"".join(xadd_command(stream, task_json(agent, sent + i)) for i in range(n))
        sock.sendall(payload)
        sent += n
        owed += 2 * n
        while owed > 2 * BATCH:  # keep at most one batch of replies unread
            read_some()
        if rate > 0:
            ahead = sent / rate - (time.perf_counter() - started)
            if ahead > 0:
                time.sleep(ahead)
    while owed > 0:
        read_some()
    elapsed = time.perf_counter() - started
    sock.close()
    return total / elapsed if elapsed else 0.0


def payload_file(folder: Path, agent: str, lines: int = 1000) -> Path:
    path = folder / f"tap-payloads-{agent}.txt"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\n".join(task_json(agent, n) for n in range(lines)))
    return path


def kafka_argv(bootstrap: str, topic: str, payloads: Path, total: int, rate: float) -> list[str]:
    """java ProducerPerformance: `total` records from the payload file at `rate`/s (-1: unthrottled)."""
    from sandbox.brokers.kafka import TOOL_JVM_OPTS, TOOLS_LOG4J, _log4j_file, find_java
    from sandbox.brokers.kafka_jars import classpath, ensure_kafka_jars

    jars = ensure_kafka_jars()
    log4j = _log4j_file(jars, "tools-log4j.properties", TOOLS_LOG4J)
    opts = [o for o in TOOL_JVM_OPTS if not o.startswith("-XX:TieredStopAtLevel")]  # it runs for seconds
    return [
        find_java(), *opts, f"-Dlog4j.configuration=file:{log4j}", "-cp", classpath(jars),
        "org.apache.kafka.tools.ProducerPerformance",
        "--topic", topic, "--num-records", str(total), "--throughput", str(int(rate) if rate > 0 else -1),
        "--payload-file", str(payloads),
        "--producer-props", f"bootstrap.servers={bootstrap}", "acks=1", "linger.ms=5", "batch.size=131072",
        "compression.type=none",
    ]


def main(argv: list[str]) -> int:
    backend, url, stream, total, rate = argv[0], argv[1], argv[2], int(argv[3]), float(argv[4])
    if backend != "redis":
        print("only redis here; Kafka uses ProducerPerformance", file=sys.stderr)
        return 2
    agent = stream.rsplit(":", 1)[-1]
    print(f"{produce_redis(url, stream, agent, total, rate):.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
