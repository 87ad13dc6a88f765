"""A backend switch with tasks in flight, on a REAL local stack, driven with the Pilot (issue 12 §2).

Slow tasks held by a live worker finish on the old broker; tasks no worker holds (their service
scaled to 0) are moved and answered on the new broker once it runs again. Every one ends `success`
in the history with its task id, which the row shows from the moment the task is sent. Both ways.
"""

from __future__ import annotations

import json

import pytest
from textual.widgets import Input, TextArea

from sandbox.runtime.base import Runtime
from sandbox.tui.app import SandboxApp
from sandbox.tui.send_panel import SendPanel
from sandbox.tui.switch_dialog import SwitchDialog
from sandbox.tui.task_history import SentTask, TaskHistory
from tests.tui.test_app_live import all_running, errors, live_runtime, notes, select_service, service, until

__all__ = ["live_runtime"]  # the fixture

def slow(ms: int) -> str:
    return json.dumps({"query": "x", "simulate": {"delay_ms": ms}})
BUSY, IDLE = "analyzer", "writer"  # a worker holds the first's tasks; nobody runs the second's


async def send_slow(pilot, agent: str, ms: int = 5000) -> SentTask:
    """Choose the agent, type slow inputs, ctrl+s; do not wait for the answer."""
    panel = pilot.app.main.query_one(SendPanel)
    await pilot.press("1")
    panel.query_one("#send-agent").value = agent
    await pilot.pause()
    await until(lambda: panel.agent == agent, "the agent chosen", 10)
    await pilot.pause(0.3)  # the agent's remembered inputs are in the editor; now ours
    editor = panel.query_one("#send-inputs", TextArea)
    editor.text = slow(ms)
    await pilot.pause()
    assert editor.text == slow(ms)
    await pilot.press("ctrl+s")
    await pilot.pause()
    task = list(panel.query_one(TaskHistory).tasks.values())[-1]
    assert task.agent == agent and task.state == "pending" and task.payload["simulate"]["delay_ms"] == ms
    history = panel.query_one(TaskHistory)
    assert task.task_id and history.get_cell(str(task.number), "task") == task.task_id[:8]  # from the start
    return task


async def scale_to(pilot, name: str, replicas: int) -> None:
    await select_service(pilot, name)
    key = "minus" if service(pilot.app, name).desired > replicas else "plus"
    while service(pilot.app, name).desired != replicas:
        await pilot.press(key)
    await until(lambda: service(pilot.app, name).replicas_label == f"{replicas}/{replicas}",
                f"{name} {replicas}/{replicas}", 90)


async def switch_with_tasks_in_flight(pilot, source: str, target: str) -> None:
    app = pilot.app
    await scale_to(pilot, f"{IDLE}_worker", 0)
    busy = [await send_slow(pilot, BUSY, 30_000) for _ in range(2)]  # still running at the switch
    idle = [await send_slow(pilot, IDLE) for _ in range(3)]
    await until(lambda: all(s.running for s in [service(app, f"{BUSY}_worker")]), "the busy worker up", 10)
    await pilot.pause(1.0)  # the worker has taken its two tasks
    app.main.query_one("#services").focus()
    await pilot.press("b")
    dialog = await until(lambda: isinstance(app.screen, SwitchDialog) and app.screen, "the switch dialog", 10)
    await until(lambda: dialog.pending is not None or "Cannot" in str(dialog.query_one("#switch-pending").render()),
                "the counts", 90)
    assert dialog.pending is not None, str(dialog.query_one("#switch-pending").render())
    # held by a live worker: in progress (Kafka counts what its partitions hold uncommitted); no worker: queued
    assert dialog.pending.queued == {IDLE: 3}, dialog.pending  # never the live worker's as "to move"
    text = str(dialog.query_one("#switch-pending").render())
    assert "3 queued or held by a dead worker (writer 3)" in text, text
    if source == "redis":  # Redis says exactly what each consumer holds
        assert dialog.pending.in_progress == {BUSY: 2}, (dialog.pending, [(t.state, t.latency_ms, t.error) for t in busy])
        assert "2 in progress (analyzer 2)" in text, text
    await pilot.press("m")
    await until(lambda: app.stack.switching, "the switch started", 10)
    await until(lambda: not app.stack.switching and app.stack.backend == target, f"switched to {target}", 400)
    assert not errors(app), errors(app)
    await until(lambda: any(f"Switched {source.upper()} → {target.upper()}" in n for n in notes(app)), "the note", 10)
    for task in busy:  # answered on the old broker while its worker finished
        await until(lambda t=task: t.state != "pending", "the in-progress tasks answered", 30)
        assert task.state == "success", (task.state, task.error)
    await until(lambda: (s := service(app, target)) and s.state == "running", f"{target} running", 120)
    await scale_to(pilot, f"{IDLE}_worker", 1)  # the moved tasks are answered on the new broker
    for task in idle:
        await until(lambda t=task: t.state != "pending", "the moved tasks answered", 120)
        assert task.state == "success", (task.state, task.error)
    for task in [*busy, *idle]:
        assert task.response is not None and task.response.task_id == task.task_id
        history = app.main.query_one(TaskHistory)
        assert history.get_cell(str(task.number), "task") == task.task_id[:8]


async def launched(app: SandboxApp) -> None:
    await until(lambda: app.stack.bus is not None, "the stack up", 240)
    await until(lambda: all_running(app), "every service running", 60)


@pytest.mark.timeout(1200)
async def test_tasks_in_flight_keep_their_answers_across_a_switch_both_ways(live_runtime: Runtime) -> None:
    app = SandboxApp(live_runtime, live_runtime.settings, backend="redis")
    async with app.run_test(size=(120, 40)) as pilot:
        await launched(app)
        app.main.query_one(SendPanel).query_one("#send-timeout", Input).value = "600"
        await switch_with_tasks_in_flight(pilot, "redis", "kafka")
        await switch_with_tasks_in_flight(pilot, "kafka", "redis")


@pytest.mark.timeout(600)
async def test_a_failed_start_offers_the_other_runtime_and_it_runs(live_runtime: Runtime) -> None:
    """§1: Compose cannot start here (as on a machine with an engine and no images): the palette's
    "Start on the other runtime" brings the stack up on the local runtime."""
    from tests.tui.test_failures import PortTaken

    class ComposeWithoutImages(PortTaken):
        name = "compose"

    app = SandboxApp(ComposeWithoutImages(live_runtime.settings), live_runtime.settings, backend="redis")
    async with app.run_test(size=(120, 40)) as pilot:
        await until(lambda: any("Start on the other runtime (local)" in n for n in notes(app)), "the offer", 30)
        assert app.stack.bus is None
        app.main.query_one("#services").focus()
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"other runtime")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await until(lambda: app.stack.bus is not None, "the stack up on the local runtime", 240)
        assert app.stack.runtime_name == "local" and app.stack.backend == "redis"
        assert "local" in str(app.main.query_one("#runtime").render())


@pytest.mark.timeout(600)
async def test_every_quick_plus_press_counts(live_runtime: Runtime) -> None:
    """§5: five quick `+` from 3 replicas reach 8 (each press counts, a poll in between loses none)."""
    app = SandboxApp(live_runtime, live_runtime.settings, backend="redis")
    async with app.run_test(size=(120, 40)) as pilot:
        await launched(app)
        await scale_to(pilot, "validator_worker", 3)
        await select_service(pilot, "validator_worker")
        for _ in range(5):
            await pilot.press("plus")
            await pilot.pause(0.3)  # a poll may land between presses
        assert service(app, "validator_worker").desired == 8
        await until(lambda: service(app, "validator_worker").replicas_label == "8/8", "validator_worker 8/8", 120)
