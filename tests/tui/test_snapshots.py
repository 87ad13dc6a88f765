"""Snapshots of every view with fixed data, at 120x40 and 80x24.

Update after an intended change with: pytest tests/tui/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

import pytest

from sandbox.config import Settings
from sandbox.tui.app import SandboxApp
from sandbox.tui.demo_data import messages, populate
from sandbox.tui.message_detail import MessageDetail
from sandbox.tui.quit_dialog import QuitDialog
from sandbox.switch import WaitingTasks
from sandbox.tui.switch_dialog import SwitchDialog

SIZES = [(120, 40), (80, 24)]
pytestmark = pytest.mark.usefixtures("utc")


def app() -> SandboxApp:
    return SandboxApp(None, Settings(queue_backend="kafka"))


def showing(tab: str):
    async def run_before(pilot) -> None:
        await pilot.pause()
        populate(pilot.app)
        pilot.app.main.action_show_tab(tab)
        if tab == "send":  # a blinking cursor would make the picture flaky
            pilot.app.main.query_one("#services").focus()
        await pilot.pause(0.3)

    return run_before


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("tab", ["send", "logs", "messages", "queues"])
def test_tab(snap_compare, tab, size):
    assert snap_compare(app(), terminal_size=size, run_before=showing(tab))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_help(snap_compare, size):
    async def run_before(pilot) -> None:
        await pilot.pause()
        populate(pilot.app)
        await pilot.press("question_mark")
        await pilot.pause(0.2)

    assert snap_compare(app(), terminal_size=size, run_before=run_before)


def test_switch_dialog(snap_compare):
    async def run_before(pilot) -> None:
        await pilot.pause()
        populate(pilot.app)
        dialog = SwitchDialog("redis", "kafka")
        await pilot.app.push_screen(dialog)
        dialog.show_pending(WaitingTasks(in_progress={"researcher": 3}, queued={"writer": 1, "analyzer": 2}))
        await pilot.pause(0.2)

    assert snap_compare(app(), terminal_size=(120, 40), run_before=run_before)


def test_quit_dialog(snap_compare):
    async def run_before(pilot) -> None:
        await pilot.pause()
        populate(pilot.app)
        await pilot.pause(0.3)  # the history behind the dialog settles (it follows its newest row)
        await pilot.app.push_screen(QuitDialog("kafka", "local"))
        await pilot.pause(0.2)

    assert snap_compare(app(), terminal_size=(80, 24), run_before=run_before)


def test_message_detail(snap_compare):
    async def run_before(pilot) -> None:
        await pilot.pause()
        populate(pilot.app)
        await pilot.app.push_screen(MessageDetail(messages()[1]))
        await pilot.pause(0.2)

    assert snap_compare(app(), terminal_size=(120, 40), run_before=run_before)
