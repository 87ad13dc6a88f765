"""The worker process for one agent: `python -m sandbox.worker <agent>`.

It registers the agent, consumes its queue with bounded concurrency, answers
every task (errors become "error" responses), heartbeats, and on SIGTERM
finishes what it holds before it exits 0. One log line per task received and
per task done, so a person tailing the log can follow a task; the lines of a
busy moment are written together (sandbox/loglines.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time

from sandbox.agents import Agent, AgentContext, AgentFailed, AgentNotFound, agents_dir, inputs_of, load_agent
from sandbox import loglines
from sandbox.bus import Bus, BusError, make_bus
from sandbox.config import ConfigError, Settings, load_settings
from sandbox.program import run_program
from sandbox.protocol import AgentInfo, Response, Task
from sandbox.replica_name import compose_replica_number

log = logging.getLogger("sandbox.worker")


def default_worker_id(agent: str) -> str:
    """The replica's name (researcher_worker-2) where the runtime says it, else host and pid."""
    if worker_id := os.environ.get("LADDR_WORKER_ID"):  # the local runtime: the program's name
        return worker_id
    if os.environ.get("LADDR_WORKER_ID_FROM") == "compose" and (n := compose_replica_number()):
        return f"{agent}_worker-{n}"  # the name `logs` and status give this container
    return f"{agent}_worker@{socket.gethostname()}-{os.getpid()}"


class Worker:
    def __init__(self, agent: Agent, bus: Bus, settings: Settings, worker_id: str):
        self.agent = agent
        self.bus = bus
        self.settings = settings
        self.worker_id = worker_id
        self.stop = asyncio.Event()

    def info(self, status: str = "active") -> AgentInfo:
        return AgentInfo(
            name=self.agent.name,
            role=self.agent.role,
            goal=self.agent.goal,
            tools=self.agent.tools,
            status=status,
            last_heartbeat=time.time(),
            worker_id=self.worker_id,
        )

    async def handle(self, task: Task, delivery_count: int) -> Response:
        again = f" (delivery {delivery_count})" if delivery_count > 1 else ""
        loglines.info(log, f"task {task.task_id} received{again}")
        started = time.perf_counter()
        ctx = AgentContext(task=task, delivery_count=delivery_count, worker_id=self.worker_id, bus=self.bus, log=log)
        try:
            result = await self.agent.handler(inputs_of(task.payload), ctx)
            status, error = "success", None
        except AgentFailed as exc:
            result, status, error = None, "error", str(exc)
        except BusError as exc:
            result, status, error = None, "error", f"delegation failed: {exc}"
        except Exception:  # unexpected: the bus retries it, then dead-letters it with the reason
            log.exception("agent %s raised on task %s (delivery %d)", self.agent.name, task.task_id, delivery_count)
            raise
        duration_ms = (time.perf_counter() - started) * 1000
        loglines.info(log, f"task {task.task_id} done {status} in {duration_ms:.1f} ms")
        return Response(
            task_id=task.task_id,
            status=status,
            result=result,
            error=error,
            agent=self.agent.name,
            worker_id=self.worker_id,
            duration_ms=round(duration_ms, 3),
            delivery_count=delivery_count,
        )

    async def heartbeat(self) -> None:
        failing_since: float | None = None
        while not self.stop.is_set():
            try:
                await self.bus.register_agent(self.info())
                if failing_since is not None:
                    log.warning("heartbeat ok again after %.1fs", time.monotonic() - failing_since)
                    failing_since = None
            except Exception as exc:  # the broker may be restarting; the next beat retries
                if failing_since is None:  # once per outage, not once per beat
                    failing_since = time.monotonic()
                    log.warning("heartbeat failed (%s); retrying every %gs", exc, self.settings.heartbeat_s)
                else:
                    log.debug("heartbeat failed again: %s", exc)
            try:
                await asyncio.wait_for(self.stop.wait(), self.settings.heartbeat_s)
            except asyncio.TimeoutError:
                pass

    async def run(self) -> None:
        # A worker started by hand for a new agent must not wait for someone else
        # to create its queue (a consumer does not see a topic created later).
        await self.bus.ensure_topology([self.agent.name], self.settings.kafka_partitions)
        await self.bus.register_agent(self.info())
        log.info("worker %s serving agent '%s' on %s (%s)", self.worker_id, self.agent.name,
                 self.bus.backend, self.settings.broker_address)
        beats = asyncio.create_task(self.heartbeat())
        try:
            await self.bus.serve(
                self.agent.name, self.worker_id, self.handle,
                concurrency=self.settings.worker_concurrency, stop=self.stop,
            )
        finally:
            self.stop.set()
            await beats
        log.info("worker %s stopped cleanly", self.worker_id)


async def run_worker(agent_name: str | Agent, settings: Settings, worker_id: str | None = None) -> None:
    agent = agent_name if isinstance(agent_name, Agent) else load_agent(agent_name, agents_dir(settings.agents_dir))
    bus = make_bus(settings)
    worker_id = worker_id or default_worker_id(agent.name)
    bus.worker_id = worker_id
    await connect_with_retry(bus)
    worker = Worker(agent, bus, settings, worker_id)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop.set)
    try:
        await worker.run()
    finally:
        await bus.close()


async def connect_with_retry(bus: Bus, attempts: int = 30) -> None:
    """Workers may start before the broker answers: wait for it, saying so."""
    for attempt in range(1, attempts + 1):
        try:
            await bus.connect()
            return
        except BusError as exc:
            if attempt == attempts:
                raise
            log.warning("waiting for the broker (%s); attempt %d/%d", exc, attempt, attempts)
            await asyncio.sleep(min(2.0, 0.2 * attempt))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python -m sandbox.worker <agent>", file=sys.stderr)
        return 2
    # the lines of a busy moment leave in one write (loglines.py): two per task, found by task id
    loglines.setup(os.environ.get("LOG_LEVEL", "INFO"), sys.stdout)

    def prepare() -> tuple[Agent, Settings]:
        settings = load_settings()
        return load_agent(argv[0], agents_dir(settings.agents_dir)), settings

    return run_program(prepare, lambda loaded: asyncio.run(run_worker(*loaded)),
                       bad_input=(ConfigError, AgentNotFound, ValueError), failed=(BusError,))


if __name__ == "__main__":
    sys.exit(main())
