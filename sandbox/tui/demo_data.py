"""Fixed data for screenshots and snapshot tests: a Kafka stack mid-demo.

Widgets render whatever they are fed, so these pictures need no live stack.
"""

from __future__ import annotations

import json

from sandbox.bus import ConsumerInfo, QueueStats, TapMessage
from sandbox.protocol import AGENTS, Response, kafka_topic
from sandbox.runtime.base import LogLine, Replica, ServiceStatus
from sandbox.tui.task_history import SentTask

BASE = 1_760_000_000.0  # a fixed moment, so pictures do not change between runs
REPLICAS = {"coordinator": 3, "researcher": 3, "analyzer": 2, "writer": 2, "validator": 2}


def services(backend: str = "kafka") -> list[ServiceStatus]:
    def up(name: str, kind: str, count: int, ports: list[int], health: str = "healthy") -> ServiceStatus:
        replicas = [Replica(f"{name}-{i}", i, "running", pid=4100 + i, uptime_s=600.0) for i in range(1, count + 1)]
        return ServiceStatus(name, kind, count, replicas, health, ports)

    broker = up("kafka", "broker", 1, [9092, 9101]) if backend == "kafka" else up("redis", "broker", 1, [6379])
    found = [broker, up("api", "api", 1, [8000])]
    for agent, count in REPLICAS.items():
        found.append(up(f"{agent}_worker", "worker", count, []))
    writer = found[-2]
    writer.desired = 3
    writer.replicas.append(Replica("writer_worker-3", 3, "starting"))
    writer.health = "starting"
    found[-1].note = "Laddr worker; NoOp LLM (gemini needs GEMINI_API_KEY)"  # a long value that must show
    return found


RESEARCHER_BACKLOG = (0, 1, 3, 6, 9, 7, 5, 4, 6, 8, 5, 3)  # the waiting trend the pictures show


def queues(step: int = len(RESEARCHER_BACKLOG) - 1) -> list[QueueStats]:
    """The queues as read at refresh `step` (2 s apart): tasks keep arriving, the researcher lags a little."""
    stats = []
    for n, (agent, count) in enumerate(REPLICAS.items()):
        partitions = 2 if agent == "analyzer" else 6
        consumers = []
        for i in range(1, count + 1):
            owned = [p for p in range(partitions) if p % count == i - 1]
            consumers.append(ConsumerInfo(f"{agent}_worker-{i}", partitions=owned))
        lag = RESEARCHER_BACKLOG[step] if agent == "researcher" else 0
        added = 120 + 7 * count + step * 2 * (24 - 4 * n)  # 24, 20, 16... tasks/s
        stats.append(QueueStats(agent, kafka_topic(agent), length=120 + 7 * count, lag=lag, partitions=partitions,
                                consumers=consumers, added=added))
    # three analyzer replicas for two partitions: one sits idle
    stats[2].consumers.append(ConsumerInfo("analyzer_worker-3", partitions=[]))
    return stats


def _tap(i: int, channel: str, kind: str, doc: dict, agent: str, status: str | None = None) -> TapMessage:
    raw = json.dumps(doc).encode()
    return TapMessage(channel, kind, BASE + i * 0.137, raw, doc, doc.get("task_id"), agent, status, f"{i % 6}:{1000 + i}")


def messages(count: int = 60) -> list[TapMessage]:
    found = []
    for i in range(count):
        agent = AGENTS[i % len(AGENTS)]
        task_id = f"{i:08x}-5d1e-4c8a-9f0b-7a6c{i:08x}"
        if i % 2 == 0:
            doc = {"task_id": task_id, "agent_name": agent, "payload": {"query": f"test {i}"}, "created_at": BASE + i}
            found.append(_tap(i, kafka_topic(agent), "task", doc, agent))
        else:
            ok = i % 7 != 3
            doc = {
                "task_id": task_id,
                "status": "success" if ok else "error",
                "result": {"answer": f"{agent} handled test {i}"} if ok else None,
                "error": None if ok else "tool 'search' timed out",
                "created_at": BASE + i,
                "agent": agent,
                "worker_id": f"{agent}_worker-{i % 2 + 1}",
                "duration_ms": 12.5 + i,
            }
            found.append(_tap(i, "laddr.responses", "response", doc, agent, doc["status"]))
    found.append(TapMessage("laddr.dlq", "dlq", BASE + count, b"{not json", None, None, None, None, "0:7"))
    return found


def log_lines(count: int = 80) -> list[LogLine]:
    found = []
    for i in range(count):
        replica = f"researcher_worker-{i % 3 + 1}"
        task_id = f"{i // 2:08x}-5d1e-4c8a-9f0b-7a6c{i // 2:08x}"
        verb = "received task" if i % 2 == 0 else f"finished task {task_id} done success in {5001 + i % 9}.0 ms;"
        text = f"{verb} {task_id}" if i % 2 == 0 else verb
        found.append(LogLine("researcher_worker", replica, f"INFO researcher: {text}", BASE + i * 0.25))
    return found


def sent_tasks() -> list[SentTask]:
    ok = SentTask(1, "researcher", {"query": "test"}, sent_at=BASE, state="success", latency_ms=38.2)
    ok.response = Response(
        "0a1b2c3d-5d1e-4c8a-9f0b-7a6c0a1b2c3d", "success", {"answer": "researched: test", "sources": 3},
        created_at=BASE, agent="researcher", worker_id="researcher_worker-2", duration_ms=21.4,
    )
    ok.task_id = ok.response.task_id
    failed = SentTask(2, "validator", {"draft": ""}, sent_at=BASE + 4, state="error", latency_ms=17.0)
    failed.response = Response(
        "1b2c3d4e-aaaa-4c8a-9f0b-7a6c1b2c3d4e", "error", None, "nothing to validate",
        created_at=BASE + 4, agent="validator", worker_id="validator_worker-1", duration_ms=3.1,
    )
    failed.task_id = failed.response.task_id
    late = SentTask(3, "writer", {"topic": "kafka"}, sent_at=BASE + 9, state="timeout", latency_ms=30_000.0)
    late.error = "no response from 'writer' for task 2c3d… within 30s"
    late.task_id = "2c3d4e5f-bbbb-4c8a-9f0b-7a6c2c3d4e5f"
    return [failed, late, ok]


def populate(app, backend: str = "kafka") -> None:
    """Feed every panel of a SandboxApp (built without a runtime)."""
    from sandbox.tui.header_bar import HeaderBar
    from sandbox.tui.logs_view import LogsView
    from sandbox.tui.messages_view import MessagesView
    from sandbox.tui.queues_view import QueuesView
    from sandbox.tui.send_panel import SendPanel
    from sandbox.tui.services_panel import ServicesPanel

    screen = app.main
    current = services(backend)
    header = screen.query_one(HeaderBar)
    header.set_backend(backend)
    header.set_runtime("local")
    header.set_broker("127.0.0.1:9092" if backend == "kafka" else "redis://127.0.0.1:6379/0")
    header.set_health(current)
    screen.query_one(ServicesPanel).update_services(current)
    send = screen.query_one(SendPanel)
    for task in sent_tasks():
        send.add_sent(task)
        send.finish(task)
    logs = screen.query_one(LogsView)
    logs.follow("researcher_worker")  # no stack: shows the name, reads nothing
    logs.add_log_lines(log_lines())
    logs.flush()
    tap = screen.query_one(MessagesView)
    tap.add_messages(messages())
    tap.flush()
    for step in range(len(RESEARCHER_BACKLOG)):
        screen.query_one(QueuesView).update_queues(queues(step), now=2.0 * step, backend=backend)


def trace():  # -> sandbox.trace.Trace
    """A coordinator's task and the four it delegated, as a trace screen shows it (docs/trace.svg)."""
    from sandbox.protocol import KAFKA_RESPONSES, SANDBOX_META
    from sandbox.trace import build

    root = "a8af4ad4-b17a-4635-b1b0-1613b676d828"
    steps = [(root, "coordinator", None, 0.000, 0.023)]
    for n, agent in enumerate(AGENTS[1:]):
        steps.append((f"{n + 1:x}c0a4428-6a45-4700-9fbc-eb3d2a93{n:04x}", agent, root, 0.005 + 0.004 * n, 0.0025))
    found, lines = [], []
    for i, (task_id, agent, parent, at, took) in enumerate(steps):
        payload = {"query": "test"} | ({SANDBOX_META: {"parent": parent}} if parent else {})
        task = {"task_id": task_id, "agent_name": agent, "payload": payload, "created_at": BASE + at}
        found.append(TapMessage(kafka_topic(agent), "task", BASE + at, json.dumps(task).encode(), task, task_id,
                                agent, None, f"0:{2 * i}"))
        replica = f"{agent}_worker-1"
        done = at + (took if parent else 0.023)
        answer = {"task_id": task_id, "status": "success", "result": {"agent": agent}, "worker_id": replica,
                  "created_at": BASE + done}
        found.append(TapMessage(KAFKA_RESPONSES, "response", BASE + done, json.dumps(answer).encode(), answer,
                                task_id, agent, "success", f"0:{2 * i + 1}"))
        for when, text in ((at + 0.001, f"task {task_id} received"),
                           (done, f"task {task_id} done success in {(done - at - 0.001) * 1000:.1f} ms")):
            lines.append(LogLine(f"{agent}_worker", replica, f"INFO {agent}: {text}", BASE + when))
    return build(root, "kafka", found, [], lines)
