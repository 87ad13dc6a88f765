"""Who serves each agent, from the registry *and* from the broker itself.

Laddr 0.9.6 keeps its Kafka registry in memory (nothing on the broker) and heartbeats
every 30 s; on Redis a Laddr worker and a sandbox worker of the same agent overwrite
each other's registry field. So the registry alone cannot say who is there: the
consumers in each agent's group (Redis XINFO CONSUMERS, Kafka group members) are
the other witness, and each kind is judged by its own heartbeat interval.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from sandbox.bus.base import Bus, ConsumerInfo, QueueStats
from sandbox.protocol import AgentInfo, agent_of_channel

LADDR_HEARTBEAT_S = 30.0  # Laddr 0.9.6's Agent._heartbeat_loop
SANDBOX = "sandbox"
LADDR = "laddr"
# A heartbeat may be this many intervals late before its sender counts as gone.
MISSED_BEATS = 2.5
# Laddr's RedisBus names its consumer `worker_<8 hex>`; its KafkaBus sets no client id,
# so aiokafka's default (`aiokafka-<version>`) is what the group shows.
_LADDR_CONSUMER = re.compile(r"^(worker_[0-9a-f]{8}|aiokafka-[0-9.]+)$")


def consumer_kind(name: str) -> str:
    return LADDR if _LADDR_CONSUMER.match(name) else SANDBOX


def entry_kind(info: AgentInfo) -> str:
    """The sandbox's workers sign their registry entries; Laddr's do not."""
    return SANDBOX if info.worker_id else LADDR


@dataclass(slots=True)
class AgentPresence:
    """One agent as the registry and the broker show it."""

    name: str
    kinds: list[str] = field(default_factory=list)  # who consumes its queue now: "sandbox", "laddr"
    consumers: list[ConsumerInfo] = field(default_factory=list)
    registry: AgentInfo | None = None
    registry_kind: str | None = None
    registry_alive: bool | None = None  # None: no entry
    on_broker: bool = False  # its stream / topic exists
    notes: list[str] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return bool(self.consumers) or bool(self.registry_alive)

    @property
    def kind(self) -> str:
        kinds = self.kinds or ([self.registry_kind] if self.registry_kind else [])
        return "+".join(kinds) if kinds else "none"


def heartbeat_interval(info: AgentInfo, sandbox_interval: float) -> float:
    return sandbox_interval if entry_kind(info) == SANDBOX else LADDR_HEARTBEAT_S


def registry_alive(info: AgentInfo, now: float, sandbox_interval: float) -> bool:
    return now - info.last_heartbeat <= MISSED_BEATS * heartbeat_interval(info, sandbox_interval) + 1.0


def merge(
    registry: dict[str, AgentInfo], stats: list[QueueStats], now: float, sandbox_interval: float
) -> list[AgentPresence]:
    """One row per agent seen anywhere, each source kept (none replaces another)."""
    rows: dict[str, AgentPresence] = {}
    for name, info in registry.items():
        row = rows.setdefault(name, AgentPresence(name))
        row.registry, row.registry_kind = info, entry_kind(info)
        row.registry_alive = registry_alive(info, now, sandbox_interval)
    for queue in stats:
        row = rows.setdefault(queue.agent, AgentPresence(queue.agent))
        row.on_broker = queue.exists
        row.consumers = list(queue.consumers)
        row.kinds = sorted({consumer_kind(c.name) for c in queue.consumers})
    for row in rows.values():
        _explain(row)
    return [rows[name] for name in sorted(rows)]


def _explain(row: AgentPresence) -> None:
    if row.registry is None and row.consumers:
        row.notes.append(f"not in the registry; seen as {len(row.consumers)} consumer(s) of its queue")
    if row.registry_kind and row.kinds and row.registry_kind not in row.kinds:
        row.notes.append(f"registry entry written by a {row.registry_kind} worker, queue consumed by {row.kind}")
    elif len(row.kinds) > 1:
        row.notes.append(
            f"served by sandbox and Laddr workers in one group: the registry holds only the last "
            f"writer's entry ({row.registry_kind or 'none'})"
        )
    if row.registry is not None and not row.registry_alive and not row.consumers:
        row.notes.append(f"registry heartbeat {row.registry.last_heartbeat:.0f} is stale and nobody consumes")


def describe_presence(p: AgentPresence) -> str:
    """One line: who serves it and how that is known."""
    parts = [f"served by {p.kind}" if p.consumers or p.registry else "nobody serves it"]
    if p.registry is not None:
        age = time.time() - p.registry.last_heartbeat
        parts.append(f"{p.registry_kind} heartbeat {age:.1f}s ago" + ("" if p.registry_alive else " (stale)"))
    if p.consumers:
        parts.append(f"{len(p.consumers)} consumer(s) in its group")
    return ", ".join(parts) + "".join(f"; {n}" for n in p.notes)


async def agent_presence(bus: Bus, sandbox_interval: float) -> list[AgentPresence]:
    """Every agent the registry or the broker knows, with who serves it."""
    registry = await bus.agents()
    names = await known_agents(bus, (), registry)
    stats = await bus.queue_stats(names) if names else []
    return merge(registry, stats, time.time(), sandbox_interval)


async def known_agents(bus: Bus, stack_agents: tuple[str, ...],
                       registry: dict[str, AgentInfo] | None = None) -> list[str]:
    """The stack's agents first, then any other the registry (read now unless given) or the broker knows."""
    registry = await bus.agents() if registry is None else registry
    found = [a for a in map(agent_of_channel, await bus.channels()) if a]
    return list(dict.fromkeys([*stack_agents, *sorted({*registry, *found})]))
