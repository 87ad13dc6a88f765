"""The trace screen driven with the Pilot against a REAL local stack (Redis, then Kafka)."""

from __future__ import annotations

from contextlib import asynccontextmanager

import pytest
from textual.widgets import Select, TextArea

from sandbox.tui.app import SandboxApp
from sandbox.tui.live_lines import LiveLines
from sandbox.tui.messages_view import MessagesView
from sandbox.tui.send_panel import SendPanel
from sandbox.tui.task_history import TaskHistory
from sandbox.tui.trace_screen import TraceScreen
from tests.tui.test_app_live import errors, live_runtime, until  # noqa: F401  (live_runtime: a fixture)

SUBS = ("researcher", "analyzer", "writer", "validator")


async def cursor_on_task(pilot, agent: str):
    """The Messages tab up, its cursor on the newest task for `agent`; returns that message."""
    messages = pilot.app.main.query_one(MessagesView)
    row = await until(lambda: next((m for m in reversed(messages.live.items())
                                    if m.kind == "task" and m.agent == agent), None), f"{agent}'s task", 60)
    await pilot.press("3")
    live = messages.query_one(LiveLines)
    live.focus()
    live.cursor = next(i for i, m in enumerate(live.items()) if m == row)
    return row


@asynccontextmanager
async def running(live_runtime, backend: str = "redis", size: tuple[int, int] = (160, 45)):  # noqa: F811
    """The app on a live stack, up and with its agents loaded: yields the Pilot."""
    app = SandboxApp(live_runtime, live_runtime.settings, backend=backend)
    async with app.run_test(size=size) as pilot:
        await until(lambda: app.stack.bus is not None, "the stack up", 240)
        await until(lambda: app.main.query_one(SendPanel).query_one("#send-agent", Select).value != Select.BLANK,
                    "agents loaded", 60)
        yield pilot


async def send_inputs(pilot, agent: str, inputs: str) -> None:
    panel = pilot.app.main.query_one(SendPanel)
    await pilot.press("1")
    panel.query_one("#send-agent", Select).value = agent
    await pilot.pause()
    editor = panel.query_one("#send-inputs", TextArea)
    editor.text = inputs
    editor.focus()
    await pilot.press("ctrl+s")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("backend", ["redis", "kafka"])
async def test_t_traces_a_coordinator_task_live_from_messages_and_from_history(live_runtime, backend) -> None:  # noqa: F811
    async with running(live_runtime, backend, (200, 50)) as pilot:
        app = pilot.app
        await send_inputs(pilot, "coordinator", '{"query": "slow trace", "simulate": {"delay_ms": 8000}}')
        # -- t on the Messages row while the task runs: it fills in ----------------------------
        row = await cursor_on_task(pilot, "coordinator")
        await pilot.press("t")
        screen = await until(lambda: isinstance(app.screen, TraceScreen) and app.screen, "the trace screen", 10)
        assert screen.task_id == row.task_id
        await until(lambda: screen.trace is not None, "a first read", 30)
        assert not screen.trace.finished and screen.trace.root.status in ("queued", "running")
        # The workers' log lines may trail the last answer by a moment (written in batches).
        await until(lambda: screen.trace.finished and len(screen.trace.nodes) == 5 and screen.trace.logged(),
                    "the trace filled in, with every task's log lines", 90)
        assert screen.reads > 1
        tree = str(screen.query_one("#trace-tree").render())
        for agent in SUBS:
            assert f"{agent}_worker-1" in tree
        logs = str(screen.query_one("#trace-logs").render())
        for node in screen.trace.nodes:
            assert node.task_id in logs
        assert '"status": "success"' in str(screen.query_one("#trace-responses").render())
        await pilot.press("escape")
        await until(lambda: not isinstance(app.screen, TraceScreen), "closed", 10)

        # -- t on the Send-history row ---------------------------------------------------------
        await pilot.press("1")
        history = app.main.query_one(SendPanel).query_one(TaskHistory)
        await until(lambda: list(history.tasks.values())[-1].state == "success", "the answer", 60)
        history.focus()
        await pilot.pause()
        await pilot.press("t")
        screen = await until(lambda: isinstance(app.screen, TraceScreen) and app.screen, "the trace screen again", 10)
        assert screen.task_id == row.task_id
        await until(lambda: screen.trace is not None and screen.trace.finished, "the finished trace", 30)
        assert [c.agent for c in screen.trace.root.children] == list(SUBS)
        assert not errors(app), errors(app)


@pytest.mark.timeout(600)
async def test_a_poison_task_in_the_dead_letters_tab_requeue_and_drop(live_runtime) -> None:  # noqa: F811
    from sandbox.tui.confirm_dialog import ConfirmDialog
    from sandbox.tui.dead_letters_view import DeadLettersView, task_id_of

    async with running(live_runtime) as pilot:
        app = pilot.app
        await send_inputs(pilot, "researcher", '{"query": "x", "simulate": {"raise": "poison in the tab"}}')
        history = app.main.query_one(SendPanel).query_one(TaskHistory)
        sent = list(history.tasks.values())[-1]
        await until(lambda: sent.state != "pending", "the error answer", 60)
        await pilot.press("5")
        view = app.main.query_one(DeadLettersView)

        def mine() -> list:
            return [d for d in view.letters.values() if task_id_of(d) == sent.task_id]

        [letter] = await until(mine, "the poison task in Dead letters", 30)
        assert "poison in the tab" in letter.reason and letter.delivery_count == 5
        row = str(view.table.get_row(letter.id))
        assert "researcher" in row and "poison in the tab" in row
        view.table.focus()
        view.table.move_cursor(row=view.table.get_row_index(letter.id))
        await pilot.press("r")
        again = await until(lambda: [d for d in mine() if d.id != letter.id], "it lands again", 60)
        assert again[0].delivery_count == 10 and letter.id not in view.letters
        view.table.move_cursor(row=view.table.get_row_index(again[0].id))
        await pilot.press("d")
        dialog = await until(lambda: isinstance(app.screen, ConfirmDialog) and app.screen, "the confirm dialog", 10)
        await pilot.press("y")
        await until(lambda: not isinstance(app.screen, ConfirmDialog) and not mine(), "dropped", 30)
        assert dialog is not None and not errors(app), errors(app)


@pytest.mark.timeout(600)
async def test_a_resends_a_messages_row_as_a_new_task(live_runtime) -> None:  # noqa: F811
    from tests.tui.test_app_live import notes

    async with running(live_runtime) as pilot:
        app = pilot.app
        await send_inputs(pilot, "analyzer", '{"facts": ["a", "bb"]}')
        row = await cursor_on_task(pilot, "analyzer")
        messages = app.main.query_one(MessagesView)
        await pilot.press("a")
        note = await until(lambda: next((n for n in notes(app) if n.startswith("Sent again to analyzer")), None),
                           "the resend answered", 60)
        new_id = note.split(" as ")[1].split(":")[0]
        assert new_id != row.task_id and note.endswith("success")
        await until(lambda: any(m.task_id == new_id and m.kind == "response" for m in messages.live.items()),
                    "the new task's answer in Messages", 30)
