"""`a` on a Messages, Send-history or Dead-letters row: the same payload again, as a new task."""

from __future__ import annotations

from textual.screen import Screen

from sandbox.tui.reporting import describe
from sandbox.tui.stack import stack_of
from sandbox.tui.trace_screen import selected_task_id


def resend_selected(screen: Screen[None]) -> None:
    app = screen.app
    stack = stack_of(screen)
    task_id = selected_task_id(app.focused)
    if stack is None or task_id is None:
        app.notify("Put the cursor on a row with a task id, then press a", severity="warning", timeout=4)
        return

    async def run() -> None:
        try:
            old, response = await stack.resend(task_id)
        except Exception as error:  # an unknown id or a broker away: one line, the app goes on
            app.notify(f"Could not send {task_id} again: {describe(error)}", severity="error", timeout=8)
            return
        app.notify(f"Sent again to {old.agent} as {response.task_id}: {response.status}",
                   severity="information" if response.ok else "warning", timeout=8)

    screen.run_worker(run(), group="resend", exit_on_error=False)
