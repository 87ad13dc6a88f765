"""One task's trace: the waterfall of its sub-tasks, their log lines and responses; refreshed until it ends.

`t` on a Messages row or a Send-history row opens it (MainScreen.action_trace -> open_trace).
"""

from __future__ import annotations

import asyncio
import time

import orjson
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Label, Static

from sandbox.trace import Trace
from sandbox.trace_text import log_section, response_section, waterfall
from sandbox.tui.export import export
from sandbox.tui.stack import stack_of

REFRESH_S = 1.0
# Once it finished, how long the log lines of tasks that have none yet are still read for: they
# trail the answers a little, and a runtime without logs must not keep the trace refreshing.
LOG_GRACE_S = 5.0


class TraceScreen(ModalScreen[None]):
    """The trace of `task_id`, read again every second while any of its tasks is unfinished."""

    BINDINGS = [
        Binding("escape,q", "dismiss", "Close"),
        Binding("c", "copy", "Copy as JSON"),
        Binding("x", "export", "Export", tooltip="Save the trace as JSONL (one line: what trace --json prints)"),
    ]

    def __init__(self, task_id: str, trace: Trace | None = None) -> None:
        super().__init__()
        self.task_id = task_id
        self.trace = trace
        self.reads = 0

    def compose(self) -> ComposeResult:
        with Vertical(id="trace", classes="dialog"):
            yield Label(f"trace of {self.task_id}: reading…", id="trace-summary")
            with VerticalScroll(id="trace-body"):
                yield Static("", id="trace-tree")
                yield Static("", id="trace-logs")
                yield Static("", id="trace-responses")
            yield Label("[b]c[/b] copy as JSON · [b]x[/b] export · [b]esc[/b] close", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#trace", Vertical).border_title = f"trace {self.task_id}"
        self.query_one("#trace-body").focus()
        if self.trace is not None:
            self.show(self.trace)
        if stack_of(self) is not None:
            self.follow()

    def show(self, trace: Trace) -> None:
        self.trace = trace
        state = "finished" if trace.finished else "still running (refreshing)"
        notes = "".join(f"\nnote: {m}" for m in trace.missing)
        self.query_one("#trace-summary", Label).update(
            f"{len(trace.nodes)} task(s) on {trace.backend}, {state}{notes}")
        self.query_one("#trace-tree", Static).update(Text("\n".join(waterfall(trace))))
        self.query_one("#trace-logs", Static).update(Text("\nlog lines:\n" + "\n".join(log_section(trace))))
        self.query_one("#trace-responses", Static).update(
            Text("\nresponses:\n" + "\n".join(response_section(trace))))

    @work(exclusive=True, exit_on_error=False)
    async def follow(self) -> None:
        stack = stack_of(self)
        assert stack is not None
        finished_at: float | None = None
        while True:
            try:
                trace = await stack.trace(self.task_id)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the broker may be switching: say so, try again
                self.query_one("#trace-summary", Label).update(f"cannot read the trace: {error}")
            else:
                self.reads += 1
                self.show(trace)
                if trace.finished and trace.found:
                    finished_at = finished_at or time.monotonic()
                    if trace.logged() or time.monotonic() - finished_at >= LOG_GRACE_S:
                        return
            await asyncio.sleep(REFRESH_S)

    def action_copy(self) -> None:
        if self.trace is not None:
            self.app.copy_to_clipboard(orjson.dumps(self.trace.to_dict()).decode())
            self.notify("Trace copied as JSON", timeout=2)

    def action_export(self) -> None:
        if self.trace is None:
            self.notify("Nothing read yet", severity="warning", timeout=3)
            return
        export(self, f"trace-{self.task_id[:8]}", [self.trace.to_dict()], "trace")


def selected_task_id(focused: Widget | None) -> str | None:
    """The task id of the Messages row or Send-history row under the cursor, if the focus is there."""
    from sandbox.tui.live_lines import LiveLines
    from sandbox.tui.task_history import TaskHistory

    if isinstance(focused, LiveLines):
        item = focused.selected
        if item is None and focused.row_count:  # no cursor yet: the newest line
            item = focused.items()[-1]
        return getattr(item, "task_id", None)
    from sandbox.tui.dead_letters_view import DeadLettersView, task_id_of

    view = focused.parent if focused is not None else None
    if isinstance(view, DeadLettersView):
        letter = view.selected
        return task_id_of(letter) if letter is not None else None
    if isinstance(focused, TaskHistory) and focused.row_count:
        key = focused.coordinate_to_cell_key(focused.cursor_coordinate).row_key.value
        task = focused.tasks.get(key or "")
        return task.task_id if task is not None else None
    return None


def open_trace(screen: ModalScreen | object) -> None:
    """Push the trace of the selected row (MainScreen's `t`)."""
    app = getattr(screen, "app")
    task_id = selected_task_id(app.focused)
    if task_id is None:
        app.notify("Put the cursor on a Messages, Send-history or Dead-letters row with a task id, then press t",
                   severity="warning", timeout=4)
        return
    app.push_screen(TraceScreen(task_id))
