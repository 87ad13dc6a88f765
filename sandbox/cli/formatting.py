"""Plain-text renderings of services, queues and broker messages for the terminal."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import click
import orjson

from sandbox.bus import QueueStats, TapMessage
from sandbox.bus.kafka.health import PartitionHealth
from sandbox.bus.presence import AgentPresence
from sandbox.export import dumps, message_doc
from sandbox.rates import Rate
from sandbox.runtime.base import ServiceStatus

STATE_COLOURS = {"running": "green", "partial": "yellow", "starting": "yellow", "stopped": "red"}
HEALTH_COLOURS = {"healthy": "green", "unhealthy": "red", "starting": "yellow"}
KIND_COLOURS = {"task": "cyan", "response": "green", "dlq": "red"}


def table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(click.unstyle(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c + " " * (w - len(click.unstyle(c))) for c, w in zip(cells, widths)).rstrip()

    return [click.style(line(header), bold=True), *(line(r) for r in rows)]


def services_table(services: list[ServiceStatus]) -> list[str]:
    rows = []
    notes = any(s.note for s in services)
    for s in services:
        rows.append([
            s.name,
            s.replicas_label,
            click.style(s.state, fg=STATE_COLOURS.get(s.state)),
            click.style(s.health, fg=HEALTH_COLOURS.get(s.health)),
            ",".join(str(p) for p in s.ports),
            *([s.note] if notes else []),
        ])
    return table(rows, ["SERVICE", "REPLICAS", "STATE", "HEALTH", "PORTS", *(["NOTE"] if notes else [])])


def _seen(p: AgentPresence) -> str:
    if p.registry is None:
        return "not in the registry"
    age = time.time() - p.registry.last_heartbeat
    return f"{p.registry_kind} entry, heartbeat {age:.0f}s ago" + ("" if p.registry_alive else " (stale)")


def agents_table(presence: list[AgentPresence]) -> list[str]:
    """Who serves each agent, from the registry and from the broker's consumer groups."""
    rows = []
    for p in presence:
        alive = click.style("alive", fg="green") if p.alive else click.style("gone", fg="red")
        rows.append([p.name, p.kind, alive, str(len(p.consumers)), _seen(p)])
        rows += [["", "", "", "", click.style(f"! {n}", fg="yellow")] for n in p.notes]
    return table(rows, ["AGENT", "SERVED BY", "LIVENESS", "CONSUMERS", "REGISTRY"])


def agent_json(p: AgentPresence) -> dict[str, Any]:
    return {
        "name": p.name, "kind": p.kind, "alive": p.alive, "consumers": [c.name for c in p.consumers],
        "registry": None if p.registry is None else {
            "kind": p.registry_kind, "alive": p.registry_alive, "last_heartbeat": p.registry.last_heartbeat,
            "worker_id": p.registry.worker_id,
        },
        "notes": p.notes,
    }


def partition_lines(health: Iterable[PartitionHealth]) -> list[str]:
    """Per partition its leader and in-sync replicas, when replicated; the hurt ones in colour."""
    lines = []
    for h in health:
        if len(h.replicas) > 1 or not h.healthy:
            colour = "red" if h.offline or h.below_min_isr else "yellow" if h.under_replicated else None
            lines.append("  " + click.style(h.describe(), fg=colour))
    return lines


def queue_lines(stats: QueueStats, replicas: int | None = None, health: Iterable[PartitionHealth] = ()) -> list[str]:
    if not stats.exists:
        return [f"{stats.channel}: " + click.style("missing", fg="red")]
    if stats.partitions is not None:
        head = f"{stats.channel}  partitions {stats.partitions}  lag {stats.lag}  retained {stats.length}"
    else:
        head = f"{stats.channel}  length {stats.length}  waiting {stats.lag}  pending {stats.pending}"
    lines = [click.style(head, bold=True)]
    for c in stats.consumers:
        if stats.partitions is not None:
            owned = ",".join(str(p) for p in c.partitions) or click.style("none (idle)", fg="yellow")
            lines.append(f"  {c.name}  partitions {owned}")
        else:
            idle = f"  idle {c.idle_ms / 1000:.1f}s" if c.idle_ms is not None else ""
            lines.append(f"  {c.name}  pending {c.pending}{idle}")
    if not stats.consumers:
        lines.append("  " + click.style("no consumer", fg="yellow"))
    lines += partition_lines(h for h in health if h.topic == stats.channel)
    idle = stats.idle_consumers
    too_many = replicas is not None and stats.partitions is not None and replicas > stats.partitions
    if idle or too_many:
        lines.append(click.style(
            f"  ! {len(idle) or replicas - stats.partitions} replica(s) idle: more replicas than partitions; "
            f"add partitions: laddr-sandbox partitions {stats.agent} {max(replicas or 0, len(stats.consumers))}",
            fg="yellow",
        ))
    return lines


def rate_line(r: Rate) -> str:
    when = time.strftime("%H:%M:%S")
    return (f"{when}  {r.agent:<14} in {r.in_per_s:8.1f}/s  answered {r.answered_per_s:8.1f}/s  "
            f"waiting {r.waiting:6d}  {r.trend}")


def rate_json(r: Rate) -> dict[str, Any]:
    return {"time": time.time(), "agent": r.agent, "in_per_s": round(r.in_per_s, 2),
            "answered_per_s": round(r.answered_per_s, 2), "waiting": r.waiting, "trend": r.trend}


def short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text if len(text) <= width else text[: width - 1] + "…"


def message_line(m: TapMessage) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(m.timestamp)) + f".{int(m.timestamp * 1000) % 1000:03d}"
    doc = m.doc or {}
    body = doc.get("payload") if m.kind == "task" else doc.get("result") if doc.get("status") == "success" else doc.get("error")
    if m.doc is None:
        body = m.raw.decode(errors="replace")
    return "  ".join([
        click.style(when, dim=True),
        click.style(f"{m.kind:<8}", fg=KIND_COLOURS.get(m.kind)),
        f"{m.channel:<26}",
        (m.task_id or "-")[:36].ljust(36),
        (m.agent or "-")[:14].ljust(14),
        (m.status or "-")[:24].ljust(10),
        short(body),
    ])


def message_json(m: TapMessage) -> str:
    return dumps(message_doc(m))
