"""The one object the TUI does I/O through: a Runtime plus the Bus of its current backend.

Widgets never import a broker client or a runtime; they call these coroutines
from Textual workers. Failures should come as BusError or RuntimeFailure, but
the workers catch anything: a broker hiccup must never end the app.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from sandbox.bus import Bus, BusError, BusUnavailable, DeadLetter, QueueStats, RequestTimeout, TapMessage, make_bus
from sandbox.bus.presence import known_agents
from sandbox.bus.waiters import with_job_id
from sandbox.config import Settings, mask
from sandbox.protocol import Response, job_id_of, new_task_id
from sandbox.runtime.base import LogLine, Runtime, ServiceStatus
from sandbox.resend import Original, find_original
from sandbox.switch import SwitchReport, WaitingTasks, count_waiting, switch_backend
from sandbox.trace import Trace, collect, runtime_logs

Progress = Callable[[str], None]


def on_this_loop(progress: Progress) -> Progress:
    """`progress`, called on the running event loop even when a runtime calls it from a thread.

    (Compose pulls images in a worker thread and says so; widgets may only be touched from the UI's loop.)
    """
    loop = asyncio.get_running_loop()

    def relay(line: str) -> None:
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:  # a plain thread
            here = None
        if here is loop:
            progress(line)
            return
        try:
            loop.call_soon_threadsafe(progress, line)
        except RuntimeError:  # the app's loop has closed: nobody to tell
            pass

    return relay


class Stack:
    """The running sandbox as the TUI sees it."""

    def __init__(self, runtime: Runtime, settings: Settings, backend: str | None = None):
        self.runtime = runtime
        self.settings = settings
        self.requested_backend = backend
        self.backend: str | None = None
        self.bus: Bus | None = None
        self.switching = False
        self.stopping = False  # taking the stack down: outages are expected
        self.attached = False  # True when the stack was already running at launch
        self._bus_lock = asyncio.Lock()
        # Requests in flight: task id -> (job id, the future that gets the answer on the current bus).
        # A switch moves each unanswered one to the new bus (see `switch`).
        self._in_flight: dict[str, tuple[str | None, asyncio.Future[Response]]] = {}

    # -- what the header shows -------------------------------------------------
    @property
    def runtime_name(self) -> str:
        return self.runtime.name

    @property
    def manages_processes(self) -> bool:
        return self.runtime.manages_processes

    def broker_address(self, backend: str | None = None) -> str:
        backend = backend or self.backend or self.requested_backend or self.settings.queue_backend
        try:
            address = self.runtime.bus_settings(backend).broker_address
        except Exception:  # an address is decoration; never fail the header on it
            address = self.settings.with_backend(backend).broker_address
        return mask("BROKER", address)

    @property
    def other_runtime(self) -> str:
        """What a failed start offers instead: local, or Compose from local."""
        return "compose" if self.runtime.name == "local" else "local"

    def use_runtime(self, kind: str) -> None:
        """Run the stack with another runtime from now on (nothing runs: after a failed start)."""
        from sandbox.runtime import make_runtime

        self.runtime = make_runtime(kind, self.settings, backend=self.requested_backend)
        self.attached = False

    # -- lifecycle -------------------------------------------------------------
    async def start(self, progress: Progress) -> str:
        """Attach to the running stack, or bring one up; then connect the bus."""
        progress = on_this_loop(progress)
        running = await self.runtime.current_backend()
        if running:
            self.attached = True
            backend = running
            progress(f"attached to the running {backend} stack")
        else:
            backend = self.requested_backend or self.settings.queue_backend
            progress(f"starting the {backend} stack…")
            await self.runtime.up(backend, progress)
        await self.connect(backend)
        return backend

    async def connect(self, backend: str) -> None:
        async with self._bus_lock:
            await self._close_bus()
            bus = make_bus(self.runtime.bus_settings(backend), backend)
            await bus.connect()
            self.bus, self.backend = bus, backend

    async def close(self) -> None:
        async with self._bus_lock:
            await self._close_bus()

    async def _close_bus(self) -> None:
        bus, self.bus = self.bus, None
        if bus is not None:
            try:
                await asyncio.wait_for(bus.close(), 5)
            except Exception:  # closing a broken connection may fail; it is gone either way
                pass

    async def down(self, progress: Progress) -> None:
        progress = on_this_loop(progress)
        self.stopping = True
        try:
            await self.close()
            await self.runtime.down(progress)
        finally:
            self.stopping = False

    def need_bus(self) -> Bus:
        if self.bus is None:
            state = "switching backend" if self.switching else "the broker is not connected yet"
            raise BusUnavailable(f"cannot reach the broker: {state}")
        return self.bus

    # -- services --------------------------------------------------------------
    async def services(self) -> list[ServiceStatus]:
        return await self.runtime.services()

    async def scale(self, service: str, replicas: int) -> None:
        await self.runtime.scale(service, replicas)

    async def restart(self, service: str) -> None:
        await self.runtime.restart(service)

    async def kill_replica(self, service: str, replica: int) -> None:
        await self.runtime.kill_replica(service, replica)

    def logs(self, service: str, tail: int = 200) -> AsyncIterator[LogLine]:
        return self.runtime.logs(service, tail=tail, follow=True)

    # -- bus -----------------------------------------------------------------
    async def agent_names(self) -> list[str]:
        """The stack's agents, and every other one the registry or the broker knows."""
        return await known_agents(self.need_bus(), self.settings.agents)

    async def request(
        self, agent: str, payload: Any, timeout: float, sent: Callable[[str], None] | None = None
    ) -> Response:
        """Publish a task and wait for its answer, across a backend switch: an answer on the old
        broker is seen there, a task moved to the new broker is followed there by its task id.
        `sent(task_id)` is called as the task goes out."""
        bus = self.need_bus()
        task_id = new_task_id()
        job_id = job_id_of(with_job_id(payload, task_id, bus.adds_job_id))
        waiter = await bus.expect(task_id, job_id)
        self._in_flight[task_id] = (job_id, waiter)
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            if sent is not None:
                sent(task_id)
            await bus.publish_task(agent, payload, task_id=task_id)
            while True:
                left = deadline - asyncio.get_running_loop().time()
                try:
                    return await asyncio.wait_for(asyncio.shield(waiter), max(0.0, left))
                except asyncio.TimeoutError:
                    raise RequestTimeout(task_id, agent, timeout) from None
                except BusUnavailable:  # its bus closed: followed on the new one, or lost with it
                    _, now = self._in_flight.get(task_id, (None, waiter))
                    if now is waiter:
                        raise
                    waiter = now
        finally:
            self._in_flight.pop(task_id, None)
            for known in {bus, self.bus}:
                if known is not None:
                    known.forget(task_id)

    async def queue_stats(self, agents: list[str] | None = None) -> list[QueueStats]:
        return await self.need_bus().queue_stats(agents or list(self.settings.agents))

    async def tap(self, last: int = 0, since: float | None = None,
                  at: tuple[str, str] | None = None) -> AsyncIterator[TapMessage]:
        """The current broker's tap on a Bus of its own: the Messages view reads it on its own thread
        and event loop (a Bus belongs to the loop it connected on). Closed when the tap is."""
        self.need_bus()  # no broker now (switching, not up yet): say so as the main bus would
        backend = self.backend or self.settings.queue_backend
        bus = make_bus(self.runtime.bus_settings(backend), backend)
        try:
            await bus.connect()
            async for message in bus.tap(last=last, since=since, at=at):
                yield message
        finally:
            with contextlib.suppress(Exception):  # closing a broken connection may fail; it is gone either way
                await asyncio.wait_for(bus.close(), 5)

    async def dead_letters(self, limit: int = 1000) -> list[DeadLetter]:
        return await self.need_bus().dead_letters(limit)

    async def requeue_dead_letter(self, dead: DeadLetter) -> None:
        await self.need_bus().requeue_dead_letter(dead)

    async def drop_dead_letter(self, dead: DeadLetter) -> None:
        await self.need_bus().drop_dead_letter(dead)

    async def resend(self, task_id: str, timeout: float = 60.0) -> tuple[Original, Response]:
        """The task (or dead letter) `task_id` names, sent again as a new task to the same agent."""
        original = await find_original(self.need_bus(), task_id)
        if original is None:
            raise BusError(f"task {task_id} is not on the broker any more")
        return original, await self.need_bus().request(original.agent, original.payload, timeout=timeout)

    async def trace(self, task_id: str) -> Trace:
        """What happened to a task: broker history, every worker replica's log, the responses."""
        return await collect(self.need_bus(), task_id, self.runtime.worker_services,
                             runtime_logs(self.runtime, 20_000))

    # -- backend switch (sandbox/switch.py does the work) -------------------------
    async def count_pending(self) -> WaitingTasks:
        """The unanswered tasks on the current broker: in progress, or queued / held by a dead worker."""
        return await count_waiting(self.runtime)

    async def switch(self, target: str, *, migrate: bool, force: bool, progress: Progress) -> SwitchReport:
        """Switch brokers; the bus is reconnected to whichever backend runs afterwards.

        The old bus keeps listening until the workers have stopped (what they held is answered
        there) and the rest is moved; the new bus connects before any worker runs on it and
        expects every request still in flight, by task id. Raises PendingTasks when tasks wait
        and neither migrate nor force was chosen.
        """
        progress = on_this_loop(progress)
        self.switching = True
        old, self.bus = self.bus, None  # nobody else uses a broker that is going away
        connected = False

        async def before_apps(new_backend: str) -> None:
            nonlocal connected
            await self._connect_following(new_backend)
            connected = True

        try:
            try:
                return await switch_backend(self.runtime, target, migrate=migrate, force=force,
                                            progress=progress, before_apps=before_apps)
            finally:
                now = await self.runtime.current_backend()
                if now and not connected:
                    await self._connect_following(now)
                if old is not None:  # its waiters fail; requests moved on follow their new futures
                    try:
                        await asyncio.wait_for(old.close(), 5)
                    except Exception:  # a stopped broker may not say goodbye
                        pass
        finally:
            self.switching = False

    async def _connect_following(self, backend: str) -> None:
        """Connect the bus of `backend` and move every request in flight onto it."""
        async with self._bus_lock:
            bus = make_bus(self.runtime.bus_settings(backend), backend)
            await bus.connect()
            for task_id, (job_id, waiter) in list(self._in_flight.items()):
                if waiter.done() and not waiter.exception():
                    continue  # answered on the old broker
                follow = await bus.expect(task_id, job_id)
                self._in_flight[task_id] = (job_id, follow)
                known = await bus.get_response(task_id)
                if known is not None and not follow.done():
                    follow.set_result(known)
            self.bus, self.backend = bus, backend


def stack_of(node: Any) -> Stack | None:
    """The app's Stack, or None when the app shows fixed data (tests, screenshots)."""
    return getattr(node.app, "stack", None)
