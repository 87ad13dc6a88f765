"""The tasks sent from the Send tab, newest at the bottom, with their state; select one to see it again."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from textual.message import Message
from textual.widgets import DataTable

from sandbox.protocol import Response
from sandbox.tui.formatting import clock, fmt_ms, short_id, styled

KEEP = 200


@dataclass
class SentTask:
    """One request from the Send tab and, once known, how it ended."""

    number: int
    agent: str
    payload: Any
    sent_at: float = field(default_factory=time.time)
    state: str = "pending"  # pending | success | error | timeout
    response: Response | None = None
    error: str | None = None
    latency_ms: float | None = None
    task_id: str | None = None  # known from the moment it is sent


class TaskHistory(DataTable):
    """A row per sent task; selecting one posts Picked."""

    class Picked(Message):
        def __init__(self, task: SentTask) -> None:
            super().__init__()
            self.task = task

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row")
        self.tasks: dict[str, SentTask] = {}
        self.shown: SentTask | None = None  # the one the response pane shows

    def on_mount(self) -> None:
        self.border_title = "History"
        for label in ("time", "agent", "state", "task", "latency"):  # the id to follow in Logs before the latency
            self.add_column(label, key=label)

    def add_task(self, task: SentTask) -> None:
        key = str(task.number)
        self.tasks[key] = task
        self.add_row(clock(task.sent_at)[:8], task.agent, styled(task.state), short_id(task.task_id), "…", key=key)
        if len(self.tasks) > KEEP:
            oldest = next(iter(self.tasks))
            del self.tasks[oldest]
            self.remove_row(oldest)
        self.move_cursor(row=self.row_count - 1, animate=False)

    def update_task(self, task: SentTask) -> None:
        key = str(task.number)
        if key not in self.tasks:
            return
        self.update_cell(key, "state", styled(task.state), update_width=True)
        self.update_cell(key, "latency", fmt_ms(task.latency_ms) if task.latency_ms is not None else "…", update_width=True)
        self.update_cell(key, "task", short_id(task.task_id), update_width=True)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        task = self.tasks.get(event.row_key.value or "")
        if task is not None and self.has_focus:
            self.post_message(self.Picked(task))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        task = self.tasks.get(event.row_key.value or "")
        if task is not None:
            self.post_message(self.Picked(task))
