"""The app against a REAL local stack: redis-server, Kafka (KRaft), the api and the workers.

Driven with the Pilot the way a person would: launch, send to every agent,
follow a worker's logs, watch the tap, scale, kill a replica, switch to Kafka
and send again, then quit and take the stack down. The stack lives in a temp
state folder and is taken down (and anything left killed) whatever happens.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from textual.widgets import Select, TabbedContent, TextArea

from sandbox.config import Settings
from sandbox.protocol import AGENTS
from sandbox.runtime import make_runtime
from sandbox.runtime.base import Runtime, worker_services
from sandbox.runtime.local.procscan import marked_pids, terminate
from sandbox.tui.app import SandboxApp
from sandbox.tui.header_bar import HeaderBar
from sandbox.tui.logs_view import LogsView
from sandbox.tui.messages_view import MessagesView
from sandbox.tui.queues_view import QueuesView
from sandbox.tui.quit_dialog import QuitDialog
from sandbox.tui.send_panel import SendPanel
from sandbox.tui.services_panel import ServicesPanel
from sandbox.tui.switch_dialog import SwitchDialog
from sandbox.tui.task_history import SentTask, TaskHistory

WORKER_SERVICES = worker_services(Settings())  # the five example agents'
# settings a developer may have exported must not steer the stack under test
LEAKY_ENV = ("REDIS_URL", "KAFKA_BOOTSTRAP", "API_PORT", "API_HOST", "QUEUE_BACKEND", "LADDR_ENV_FILE",
             *(f"SCALE_{s.upper()}" for s in WORKER_SERVICES))


@pytest.fixture
async def live_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Runtime]:
    """make_runtime("local") in a temp folder; down() and a sweep of leftovers afterwards."""
    for key in LEAKY_ENV:
        monkeypatch.delenv(key, raising=False)
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    monkeypatch.setenv("LADDR_STATE_DIR", str(tmp_path / "state"))
    runtime = make_runtime("local", Settings(env_file=project / ".env"))
    try:
        yield runtime
    finally:
        try:
            await asyncio.wait_for(runtime.down(), 120)
        except BaseException as error:  # the sweep below still runs
            print(f"down failed: {error!r}")
        finally:
            assert not await asyncio.to_thread(terminate, marked_pids((tmp_path / "state").resolve()), 2.0)


async def until(check: Callable[[], object], what: str, timeout: float = 60.0, every: float = 0.2) -> object:
    """Wait (letting the app run) until check() is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        await asyncio.sleep(every)


def notes(app: SandboxApp) -> list[str]:
    return [n.message for n in app._notifications]


def errors(app: SandboxApp) -> list[str]:
    return [n.message for n in app._notifications if n.severity == "error"]


def service(app: SandboxApp, name: str):
    return app.main.query_one(ServicesPanel).services.get(name)


def all_running(app: SandboxApp) -> bool:
    services = app.main.query_one(ServicesPanel).services
    return bool(services) and all(s.state == "running" for s in services.values())


async def select_service(pilot, name: str) -> None:
    panel = pilot.app.main.query_one(ServicesPanel)
    panel.focus()
    panel.move_cursor(row=list(panel.services).index(name))
    await pilot.pause()
    assert panel.selected_service == name


async def send(pilot, agent: str, timeout: float = 60.0) -> SentTask:
    """Pick the agent, use the preset, press ctrl+s, wait for the answer."""
    app = pilot.app
    panel = app.main.query_one(SendPanel)
    await pilot.press("1")
    panel.query_one("#send-agent", Select).value = agent
    await pilot.pause()
    editor = panel.query_one("#send-inputs", TextArea)
    editor.focus()
    await pilot.press("ctrl+r", "ctrl+s")
    history = panel.query_one(TaskHistory)
    task = list(history.tasks.values())[-1]
    assert task.agent == agent and task.payload == {"query": "test"}
    await until(lambda: task.state != "pending", f"the answer of {agent}", timeout)
    return task


def tapped(app: SandboxApp, task_id: str) -> set[str]:
    return {m.kind for m in app.main.query_one(MessagesView).live.items() if m.task_id == task_id}


@pytest.mark.timeout(900)
async def test_the_app_runs_the_stack_end_to_end(live_runtime: Runtime) -> None:
    app = SandboxApp(live_runtime, live_runtime.settings, backend="redis")
    async with app.run_test(size=(120, 40)) as pilot:
        # -- launch: the stack comes up, the header says where it runs ------------------
        started = time.monotonic()
        await until(lambda: app.stack.bus is not None, "the stack up and the bus connected", 240)
        print(f"\nlaunch on redis: {time.monotonic() - started:.1f}s")
        assert app.stack.backend == "redis" and not app.stack.attached
        header = app.main.query_one(HeaderBar)
        assert "REDIS" in str(header.query_one("#backend").render())
        await until(lambda: all_running(app), "every service running", 60)
        assert list(app.main.query_one(ServicesPanel).services) == ["redis", "api", *WORKER_SERVICES]
        assert not errors(app), errors(app)

        # -- send: each agent answers, the response is shown --------------------------
        for agent in AGENTS:
            task = await send(pilot, agent)
            assert task.state == "success", (agent, task.error)
            assert task.response is not None and task.response.worker_id.startswith(f"{agent}_worker")
        body = str(app.main.query_one("#response-body").render())
        assert "worker_id" in body and task.task_id in body
        researcher = await send(pilot, "researcher")
        assert researcher.state == "success"

        # -- messages: the task and its response went over the broker ------------------
        await until(lambda: {"task", "response"} <= tapped(app, researcher.task_id), "task and response in Messages", 30)

        # -- logs: the worker logged the task ------------------------------------------
        await select_service(pilot, "researcher_worker")
        await pilot.press("l")
        logs = app.main.query_one(LogsView)
        assert app.main.query_one(TabbedContent).active == "logs-tab" and logs.service == "researcher_worker"
        await until(
            lambda: any(researcher.task_id in line.text for line in logs.live.items()),
            "the task's log line in the researcher's logs",
            30,
        )

        # -- scale: 1 -> 2 replicas, shown as 2/2 ---------------------------------------
        await select_service(pilot, "researcher_worker")
        await pilot.press("plus")
        await until(lambda: service(app, "researcher_worker").replicas_label == "2/2", "researcher_worker 2/2", 90)
        assert service(app, "researcher_worker").state == "running"

        # -- kill -9 a replica: the runtime restarts it -----------------------------------
        before = {r.name: r.pid for r in service(app, "researcher_worker").replicas}
        await select_service(pilot, "researcher_worker")
        await pilot.press("k")
        await until(lambda: any("SIGKILL" in n for n in notes(app)), "the kill reported", 20)
        await until(
            lambda: (s := service(app, "researcher_worker")).replicas_label == "2/2"
            and {r.name: r.pid for r in s.replicas} != before,
            "the killed replica back with a new pid",
            60,
        )

        # -- queues: the redis streams with their consumers -------------------------------
        await pilot.press("4")
        queues = app.main.query_one(QueuesView)
        await until(lambda: queues.query_one("#queues-table").row_count >= len(AGENTS), "queue stats", 20)

        # -- switch to Kafka with b, then send again ---------------------------------------
        app.main.query_one(ServicesPanel).focus()
        await pilot.press("b")
        dialog = await until(lambda: isinstance(app.screen, SwitchDialog) and app.screen, "the switch dialog", 10)
        await until(lambda: dialog.pending is not None, "the pending count", 30)
        started = time.monotonic()
        await pilot.press("m")  # migrate (or plain switch when nothing waits)
        await until(lambda: app.stack.switching, "the switch started", 10)
        await pilot.press("3")  # the UI stays usable during the switch
        assert app.main.query_one(TabbedContent).active == "messages-tab"
        await until(lambda: not app.stack.switching and app.stack.backend == "kafka", "switched to kafka", 400)
        print(f"switch redis -> kafka: {time.monotonic() - started:.1f}s")
        assert any(n.startswith("Switched REDIS → KAFKA in") for n in notes(app)), notes(app)
        assert "KAFKA" in str(header.query_one("#backend").render())
        assert not errors(app), errors(app)
        await until(lambda: all_running(app) and service(app, "kafka"), "every service running on kafka", 120)

        researcher = await send(pilot, "researcher", timeout=90)
        assert researcher.state == "success", researcher.error
        await until(lambda: {"task", "response"} <= tapped(app, researcher.task_id), "kafka task and response in Messages", 60)
        assert any(m.channel == "laddr.tasks.researcher" for m in app.main.query_one(MessagesView).live.items())

        # -- quit: take the stack down --------------------------------------------------
        await pilot.press("ctrl+q")  # the editor has focus: a plain q would be typed
        await until(lambda: isinstance(app.screen, QuitDialog), "the quit dialog", 10)
        await pilot.press("d")
        await until(lambda: app._exit, "the app exits after taking the stack down", 180)
    assert await live_runtime.current_backend() is None


@pytest.mark.timeout(600)
async def test_a_second_launch_attaches_and_leaving_keeps_the_stack(live_runtime: Runtime) -> None:
    await live_runtime.up("redis")
    app = SandboxApp(live_runtime, live_runtime.settings, backend="kafka")
    async with app.run_test(size=(80, 24)) as pilot:
        await until(lambda: app.stack.bus is not None, "attached", 60)
        assert app.stack.attached and app.stack.backend == "redis"
        # notify() only queues the toast: wait for the app to show it
        await until(lambda: any("press b to switch to KAFKA" in n for n in notes(app)), f"the hint in {notes(app)}", 10)
        task = await send(pilot, "writer")
        assert task.state == "success", task.error
        await pilot.press("ctrl+q")  # the editor has focus: a plain q would be typed
        await until(lambda: isinstance(app.screen, QuitDialog), "the quit dialog", 10)
        await pilot.press("l")  # leave it running
    assert await live_runtime.current_backend() == "redis"
