"""What happened to one task: its tree of sub-tasks, their deliveries, log lines and answers.

Sources, all read-only: the messages the broker still holds (`Bus.history`: task
streams/topics, the response history, the dead letters), every worker replica's log
(`Runtime.logs`) and the stored responses. A sub-task names its parent in its payload
(`_laddr_sandbox.parent`, which Laddr's client and worker ignore); a task without one
is a tree of one. Shared by the CLI (`trace`) and the TUI (the trace screen).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sandbox.bus.base import Bus, DeadLetter, TapMessage
from sandbox.protocol import SANDBOX_META
from sandbox.runtime.base import LogLine, Runtime

RECEIVED = re.compile(r"task (?P<id>[0-9a-fA-F-]{8,}) received(?: \(delivery (?P<n>\d+)\))?")
DONE = re.compile(r"task (?P<id>[0-9a-fA-F-]{8,}) done (?P<status>\w+) in (?P<ms>[\d.]+) ms")
RAISED = re.compile(r"raised on task (?P<id>[0-9a-fA-F-]{8,}) \(delivery (?P<n>\d+)\)")
ANY_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ASCTIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})")


@dataclass
class Delivery:
    replica: str
    count: int
    received: float | None = None
    done: float | None = None
    status: str | None = None  # success | error | raised | None (still running, or the replica died)
    duration_ms: float | None = None


@dataclass
class TraceNode:
    task_id: str
    agent: str | None = None
    parent: str | None = None
    published: float | None = None
    answered: float | None = None
    status: str = "unknown"  # queued | running | success | error | dead | unknown
    payload: Any = None
    response: dict[str, Any] | None = None
    dead_reason: str | None = None
    dead_count: int | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    children: list[TraceNode] = field(default_factory=list)

    @property
    def replica(self) -> str | None:
        if self.response and isinstance(self.response.get("worker_id"), str):
            return self.response["worker_id"]
        return self.deliveries[-1].replica if self.deliveries else None

    @property
    def delivery_count(self) -> int:
        counts = [d.count for d in self.deliveries]
        if self.response and isinstance(self.response.get("delivery_count"), int):
            counts.append(self.response["delivery_count"])
        if self.dead_count:
            counts.append(self.dead_count)
        return max(counts, default=0)

    @property
    def received(self) -> float | None:
        return min((d.received for d in self.deliveries if d.received), default=None)

    @property
    def duration_ms(self) -> float | None:
        if self.published and self.answered:
            return max(0.0, (self.answered - self.published) * 1000)
        return None

    def walk(self) -> Iterable[tuple[int, TraceNode]]:
        stack: list[tuple[int, TraceNode]] = [(0, self)]
        while stack:
            depth, node = stack.pop()
            yield depth, node
            stack.extend((depth + 1, c) for c in reversed(node.children))


@dataclass
class Trace:
    task_id: str
    backend: str
    root: TraceNode
    logs: list[LogLine] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # what could not be found, said in a line each

    @property
    def found(self) -> bool:
        return self.root.published is not None or bool(self.root.deliveries) or self.root.response is not None

    @property
    def nodes(self) -> list[TraceNode]:
        return [node for _, node in self.root.walk()]

    @property
    def finished(self) -> bool:
        """Every task ended and the root's answer (or dead letter) is known: no more tasks or answers will come."""
        ended = all(n.status in ("success", "error", "dead") for n in self.nodes)
        return ended and (self.root.response is not None or self.root.status == "dead")

    def logged(self) -> bool:
        """Every task has a log line here (workers write theirs in batches: they may trail its answer)."""
        return all(any(n.task_id in line.text for line in self.logs) for n in self.nodes)

    def to_dict(self) -> dict[str, Any]:
        def node_doc(node: TraceNode) -> dict[str, Any]:
            doc = {k: v for k, v in asdict(node).items() if k != "children"}
            doc.update(replica=node.replica, delivery_count=node.delivery_count, received=node.received,
                       duration_ms=node.duration_ms, children=[node_doc(c) for c in node.children])
            return doc

        return {
            "task_id": self.task_id, "backend": self.backend, "found": self.found, "missing": self.missing,
            "tree": node_doc(self.root),
            "logs": [{"replica": ln.replica, "service": ln.service, "timestamp": ln.timestamp, "text": ln.text}
                     for ln in self.logs],
        }


def parent_of(payload: Any) -> str | None:
    meta = payload.get(SANDBOX_META) if isinstance(payload, dict) else None
    parent = meta.get("parent") if isinstance(meta, dict) else None
    return parent if isinstance(parent, str) else None


def log_time(line: LogLine) -> float | None:
    if line.timestamp:
        return line.timestamp
    match = ASCTIME.match(line.text)
    if not match:
        return None
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").timestamp() + int(match.group(2)) / 1000


def task_ids_in(message: TapMessage) -> str | None:
    if message.task_id:
        return message.task_id
    if message.kind == "dlq" and message.raw:
        found = ANY_ID.search(message.raw.decode(errors="replace"))
        return found.group(0) if found else None
    return None


def build(task_id: str, backend: str, messages: list[TapMessage], letters: list[DeadLetter],
          lines: list[LogLine], stored: dict[str, dict[str, Any]] | None = None) -> Trace:
    """The trace of `task_id` from what was read; pure, so the TUI can rebuild it as things arrive."""
    nodes: dict[str, TraceNode] = {}

    def node(tid: str) -> TraceNode:
        return nodes.setdefault(tid, TraceNode(task_id=tid))

    for m in messages:
        tid = task_ids_in(m)
        if not tid:
            continue
        n = node(tid)
        doc = m.doc or {}
        if m.kind == "task":
            n.published = min(n.published or m.timestamp, m.timestamp)
            n.agent = n.agent or m.agent
            n.payload = doc.get("payload")
            n.parent = parent_of(n.payload)
        elif m.kind == "response":
            n.response, n.answered = doc, m.timestamp
            n.agent = n.agent or (doc.get("agent") if isinstance(doc.get("agent"), str) else None)
        elif m.kind == "dlq" and (m.status or "").startswith("dead: "):
            n.dead_reason = (m.status or "")[len("dead: "):] or "dead-lettered"
    for tid, doc in (stored or {}).items():
        if tid in nodes and nodes[tid].response is None:
            nodes[tid].response = doc
    for d in letters:
        found = ANY_ID.search(d.raw.decode(errors="replace"))
        if found and found.group(0) in nodes:
            n = nodes[found.group(0)]
            n.dead_reason, n.dead_count = d.reason, d.delivery_count
            n.answered = n.answered or d.timestamp
    root = node(task_id)
    family = {task_id}
    changed = True
    while changed:  # descendants at any depth
        changed = False
        for n in nodes.values():
            if n.parent in family and n.task_id not in family:
                family.add(n.task_id)
                changed = True
    for n in sorted(nodes.values(), key=lambda x: x.published or 0):
        if n.task_id in family and n.parent in nodes and n.task_id != task_id:
            nodes[n.parent].children.append(n)
    kept = [ln for ln in lines if any(tid in ln.text for tid in family)]
    for line in kept:
        apply_log_line(nodes, line)
    for n in (nodes[t] for t in family):
        n.status = status_of(n)
    missing = []
    if root.published is None:
        missing.append(f"task {task_id} is not on the {backend} broker any more (trimmed, or sent before a "
                       "backend switch to the other broker): publish time and payload unknown")
    if root.response is None and root.status in ("success", "error"):
        missing.append(f"the response of {task_id} is not on the {backend} broker (expired or another broker)")
    return Trace(task_id=task_id, backend=backend, root=root, logs=kept, missing=missing)


def apply_log_line(nodes: dict[str, TraceNode], line: LogLine) -> None:
    at = log_time(line)
    if m := RECEIVED.search(line.text):
        if m.group("id") in nodes:
            nodes[m.group("id")].deliveries.append(Delivery(line.replica, int(m.group("n") or 1), received=at))
    elif (m := DONE.search(line.text)) or (m := RAISED.search(line.text)):
        target = nodes.get(m.group("id"))
        if target is None:
            return
        mine = [d for d in target.deliveries if d.replica == line.replica and d.status is None]
        if mine:
            mine[-1].done, mine[-1].status = at, m.groupdict().get("status") or "raised"
            if m.groupdict().get("ms"):
                mine[-1].duration_ms = float(m.group("ms"))


def status_of(n: TraceNode) -> str:
    answered_ok = n.response is not None and n.response.get("status") == "success"
    if n.dead_reason and not answered_ok:  # a requeued dead letter that then succeeded is a success
        return "dead"
    if n.response is not None:
        status = n.response.get("status")
        return status if isinstance(status, str) else "success"
    if n.deliveries and n.deliveries[-1].status is None:
        return "running"
    if any(d.status in ("success", "error") for d in n.deliveries):
        return next(d.status for d in reversed(n.deliveries) if d.status in ("success", "error")) or "unknown"
    return "queued" if n.published else "unknown"


LogSource = Callable[[str], AsyncIterator[LogLine]]


def runtime_logs(runtime: Runtime, tail: int) -> LogSource:
    """A service's lines from before its replicas were last started again (a switch rotates the logs), then now."""
    async def lines(service: str) -> AsyncIterator[LogLine]:
        async for line in runtime.earlier_logs(service, tail=tail):
            yield line
        async for line in runtime.logs(service, tail=tail, follow=False):
            yield line

    return lines


STORED_ROUNDS = 3  # history re-reads for answers found only in the response store (sub-tasks of sub-tasks)


async def stored_responses(bus: Bus, trace: Trace, known: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The stored answers of the trace's tasks that it has none for yet (not in the history read)."""
    found: dict[str, dict[str, Any]] = {}
    for n in trace.nodes:
        if n.response is None and n.status != "dead" and n.task_id not in known:
            response = await bus.get_response(n.task_id)
            if response is not None:
                found[n.task_id] = response.to_dict()
    return found


async def collect(bus: Bus, task_id: str, services: Iterable[str], logs: LogSource | None,
                  history: int = 20_000) -> Trace:
    """Read every source once and build the trace."""
    # The logs first: whatever a log line says is done was published before it (sub-tasks included).
    lines: list[LogLine] = []
    log_errors: list[str] = []
    if logs is not None:
        for service in services:
            try:
                lines.extend([line async for line in logs(service)])
            except Exception as exc:  # a stopped service has no log to read: say so, trace the rest
                log_errors.append(f"logs of {service}: {exc}")
    messages = await bus.history(history)
    letters = await bus.dead_letters(10_000)
    stored: dict[str, dict[str, Any]] = {}
    trace = build(task_id, bus.backend, messages, letters, lines)
    for _ in range(STORED_ROUNDS):
        found = await stored_responses(bus, trace, stored)
        if not found:
            break
        # An answer looked up now may be newer than the history just read, and the tasks its
        # worker sent before answering (sub-tasks) not in that history: read it again, so that
        # a finished trace is never one that misses children.
        stored.update(found)
        messages = await bus.history(history)
        trace = build(task_id, bus.backend, messages, letters, lines, stored)
    trace.missing.extend(log_errors)
    if logs is None:
        trace.missing.append("no worker logs: this runtime does not keep them")
    trace.logs.sort(key=lambda ln: log_time(ln) or time.time())
    return trace
