"""When are the api and the worker replicas of the local stack ready?

A replica is ready when supervisord says RUNNING (it stayed up `startsecs`) and
it has registered on the bus since its process started. The registry keeps one
entry per agent (Laddr's wire format), so replicas starting together overwrite
each other's entry between two looks; other signs count too: membership of
the agent's consumer group, the worker's "serving" log line (written after it
registered), and a replica that ran through two heartbeats while its agent's
entry stayed fresh. A Laddr project's workers (WorkerRunner) name neither their
consumer nor their registry entry after the replica: they count as ready when
their agent's registry entry was written by Laddr since they started (Redis; a
blocked XREADGROUP makes no consumer before a task arrives), or when the agent's
group has as many Laddr members as Laddr replicas run (Kafka, where Laddr keeps
its registry in memory).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sandbox.bus import Bus
from sandbox.bus.presence import LADDR, consumer_kind, entry_kind
from sandbox.protocol import AgentInfo
from sandbox.runtime.base import Progress, RuntimeFailure, agent_of_service
from sandbox.runtime.local.programs import service_of
from sandbox.runtime.local.logfollow import line_time, read_tail
from sandbox.runtime.local.supervisor_client import Supervisor

Procs = dict[str, dict[str, Any]]
CRASH_LOOP_LIVES = 3


def this_life(proc: dict[str, Any] | None, heartbeat: float) -> bool:
    """A heartbeat from the process now running, not from an earlier one of that name."""
    # supervisord's start time is whole seconds; a worker registers within startsecs
    return bool(proc) and proc["statename"] in ("STARTING", "RUNNING") and heartbeat >= proc["start"] - 1


def last_log_line(log: Path) -> str:
    lines = [line.strip() for line in read_tail(log, 5)[0] if line.strip()]
    return lines[-1][:200] if lines else ""


class Readiness:
    def __init__(self, sup: Supervisor, bus: Bus, log_file: Callable[[str], Path], heartbeat_s: float,
                 laddr_workers: bool = False):
        self.laddr_workers = laddr_workers  # the replicas run a Laddr project's own workers
        self.sup = sup
        self.bus = bus
        self.log_file = log_file
        self.heartbeat_s = heartbeat_s

    async def wait(
        self, names: list[str], api_answers: Callable[[], Awaitable[bool]], timeout: float, progress: Progress
    ) -> None:
        """Return when every program in `names` is ready; RuntimeFailure when one crash-loops or time runs out."""
        started = time.monotonic()
        replicas = [n for n in names if n != "api"]
        seen: set[str] = set()
        api_ok = "api" not in names
        last_report = last_look = -1.0
        lives: dict[str, set[int]] = {}  # start times seen per program: a new one is a restart
        while True:
            elapsed = time.monotonic() - started
            procs = await self.sup.processes()
            self.fail_if_fatal(procs, names)
            self.fail_if_looping(procs, names, lives)
            look_harder = elapsed - last_look >= 1.0
            if look_harder:
                last_look = elapsed
            seen |= await self.registered([n for n in replicas if n not in seen], procs, look_harder)
            if not api_ok:
                api_ok = await api_answers()
            unregistered = [n for n in replicas if n not in seen]
            # supervisord must agree they stayed up, so a status right after says running
            not_running = [n for n in names if procs.get(n, {}).get("statename") != "RUNNING"]
            if not unregistered and not not_running and api_ok:
                progress(f"{len(replicas)} worker(s) registered, api answers ({elapsed:.1f}s)")
                return
            if elapsed > timeout:
                waiting = sorted(set(unregistered) | set(not_running) | (set() if api_ok else {"api"}))
                raise RuntimeFailure(
                    f"not ready after {timeout:.0f}s: {', '.join(waiting[:5])}; "
                    f"see: laddr-sandbox logs {service_of(waiting[0])}")
            if elapsed - last_report >= 1.0:
                last_report = elapsed
                progress(f"waiting for workers: {len(replicas) - len(unregistered)}/{len(replicas)} registered"
                         f"{'' if api_ok else ', api starting'}… {elapsed:.0f}s")
            await asyncio.sleep(0.1)  # the registry is cheap to read (a hash / a followed topic)

    def fail_if_fatal(self, procs: Procs, names: list[str]) -> None:
        for name in names:
            info = procs.get(name)
            if info and info["statename"] == "FATAL":
                why = last_log_line(self.log_file(name)) or info.get("description") or "exited too quickly"
                raise RuntimeFailure(f"{name} keeps exiting ({why}); see: laddr-sandbox logs {service_of(name)}")

    def fail_if_looping(self, procs: Procs, names: list[str], lives: dict[str, set[int]]) -> None:
        """A program that outlives startsecs and then dies is restarted forever, never FATAL:
        the third life seen while waiting is a crash loop."""
        for name in names:
            info = procs.get(name)
            if not info or not info["start"]:
                continue
            seen = lives.setdefault(name, set())
            seen.add(int(info["start"]))
            if len(seen) >= CRASH_LOOP_LIVES:
                why = last_log_line(self.log_file(name)) or "it exits after it started"
                raise RuntimeFailure(f"{name} keeps exiting ({why}); see: laddr-sandbox logs {service_of(name)}")

    async def registered(self, replicas: list[str], procs: Procs, look_harder: bool) -> set[str]:
        """Which of `replicas` have registered since their process started."""
        if not replicas:
            return set()
        if self.laddr_workers:
            return await self.laddr_ready(replicas, procs) if look_harder else set()
        agents = await self.bus.agents()
        found = {i.worker_id for i in agents.values()
                 if i.worker_id in replicas and this_life(procs.get(i.worker_id), i.last_heartbeat)}
        rest = [n for n in replicas if n not in found]
        if rest and look_harder:
            found |= await self.consuming(rest, procs)
            found |= await asyncio.to_thread(self.logged_serving, rest, procs)
            found |= self.beaten(rest, procs, agents)
        return found

    async def consuming(self, replicas: list[str], procs: Procs) -> set[str]:
        """Replicas that are consumers of their agent's queue in this life."""
        agents = sorted({agent_of_service(service_of(n)) or n for n in replicas})
        try:
            stats = await self.bus.queue_stats(agents)
        except Exception:  # only a hint: a young Kafka may have no group coordinator yet
            return set()
        found = set()
        for queue in stats:
            for consumer in queue.consumers:
                proc = procs.get(consumer.name)
                if consumer.name not in replicas or not proc or proc["statename"] != "RUNNING":
                    continue
                uptime_ms = (proc["now"] - proc["start"] + 1) * 1000
                # Redis keeps a dead consumer's entry: only one seen since this process started counts
                if consumer.idle_ms is None or consumer.idle_ms <= uptime_ms:
                    found.add(consumer.name)
        return found

    async def laddr_ready(self, replicas: list[str], procs: Procs) -> set[str]:
        """Laddr replicas: registered by Laddr since they started, else counted among their group's members."""
        by_agent: dict[str, list[str]] = {}
        for name in replicas:
            proc = procs.get(name)
            if proc and proc["statename"] == "RUNNING":
                by_agent.setdefault(agent_of_service(service_of(name)) or name, []).append(name)
        if not by_agent:
            return set()
        registry = await self.bus.agents()
        found = {n for agent, names in by_agent.items() for n in names
                 if (info := registry.get(agent)) and entry_kind(info) == LADDR
                 and this_life(procs[n], info.last_heartbeat)}
        by_agent = {a: [n for n in names if n not in found] for a, names in by_agent.items()}
        by_agent = {a: names for a, names in by_agent.items() if names}
        if not by_agent:
            return found
        try:
            stats = await self.bus.queue_stats(sorted(by_agent))
        except Exception:  # only a hint: a young Kafka may have no group coordinator yet
            return found
        for queue in stats:
            names = sorted(by_agent.get(queue.agent, []))
            if not names:
                continue
            youngest_ms = min((procs[n]["now"] - procs[n]["start"] + 1) * 1000 for n in names)
            fresh = [c for c in queue.consumers if consumer_kind(c.name) == LADDR
                     and (c.idle_ms is None or c.idle_ms <= youngest_ms)]
            found |= set(names[: len(fresh)])
        return found

    def logged_serving(self, replicas: list[str], procs: Procs) -> set[str]:
        found = set()
        for name in replicas:
            proc = procs.get(name)
            if not proc or proc["statename"] not in ("STARTING", "RUNNING"):
                continue
            for text in read_tail(self.log_file(name), 50)[0]:
                when = line_time(text)
                if f"worker {name} serving agent" in text and when is not None and when >= proc["start"] - 1:
                    found.add(name)
        return found

    def beaten(self, replicas: list[str], procs: Procs, agents: dict[str, AgentInfo]) -> set[str]:
        found = set()
        for name in replicas:
            proc = procs.get(name)
            info = agents.get(agent_of_service(service_of(name)) or "")
            if not proc or not info or proc["statename"] != "RUNNING":
                continue
            ran = proc["now"] - proc["start"]
            if ran >= 2 * self.heartbeat_s + 1 and info.last_heartbeat >= proc["start"]:
                found.add(name)
        return found
