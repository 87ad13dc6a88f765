"""Follow one service's logs: every replica interleaved, tagged in its own colour."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label

from sandbox.colours import replica_colour
from sandbox.runtime.base import LogLine
from sandbox.tui.formatting import clock
from sandbox.tui.live_lines import LiveLines
from sandbox.tui.live_view import CLEAR_KEY, FILTER_KEY, PAUSE_KEY, READING, LiveView
from sandbox.tui.stack import stack_of

MAX_TAG = 24
# "2026-11-27 10:04:14,499 " at the start of a line: shown once, in our own time column
LEADING_STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?\s*")


def pack_line(seq: int, line: LogLine) -> tuple[Any, ...]:
    """What the view keeps of a line: a plain tuple, which the cyclic GC stops tracking (see live_lines.py)."""
    return (seq, line.service, line.replica, line.text, line.timestamp)


def unpack_line(entry: tuple[Any, ...]) -> LogLine:
    return LogLine(entry[1], entry[2], entry[3], entry[4])


def render_log_line(line: LogLine, tag_width: int = 20) -> Text:
    text = Text()
    body = line.text
    if line.timestamp is not None:
        text.append(clock(line.timestamp)[:8] + " ", style="dim")
        body = LEADING_STAMP.sub("", body, count=1)
    text.append(f"{line.replica[:tag_width]:<{tag_width}} ", style=f"bold {replica_colour(line.replica)}")
    text.append("│ ", style="dim")
    text.append(body)
    return text


class LogsView(LiveView, Vertical):
    """A bounded, filterable, pausable tail of a service's replicas."""

    BINDINGS = [FILTER_KEY, PAUSE_KEY, CLEAR_KEY]

    def __init__(self, *, max_lines: int = 5_000, id: str | None = None) -> None:
        super().__init__(id=id)
        self.max_lines = max_lines
        self.service: str | None = None
        self.tag_width = 8  # grows to the longest replica name seen, so columns line up

    def compose(self) -> ComposeResult:
        with Horizontal(classes="toolbar"):
            yield Label("no service", id="log-service", classes="toolbar-title")
            self.filter_input = Input(placeholder="filter logs…  (/)", id="log-filter", compact=True)
            yield self.filter_input
            self.pause_button = Button("Pause", id="log-pause", compact=True)
            yield self.pause_button
            yield Button("Clear", id="log-clear", compact=True)
        self.live: LiveLines[LogLine] = LiveLines(
            self.format_line, keep=self.max_lines, selectable=False, item_width=self.line_width, id="log-lines",
            pack=pack_line, unpack=unpack_line,
        )
        yield self.live
        self.status_label = Label("", id="log-status", classes="status-line")
        yield self.status_label

    # -- rendering ---------------------------------------------------------------
    def format_line(self, line: LogLine) -> Text:
        return render_log_line(line, self.tag_width)

    def line_width(self, line: LogLine) -> int:
        width = len(line.replica)
        if width > self.tag_width:  # a longer replica name: realign every line
            self.tag_width = min(MAX_TAG, width)
            self.live.invalidate()
        return self.tag_width + 12 + len(line.text)

    # -- data ------------------------------------------------------------------
    def add_log_lines(self, lines: Sequence[LogLine], source: int | None = None) -> None:
        """Queue lines; the view folds them in every 100 ms. Called on the log stream's reading thread too."""
        self.live.add(lines, source)

    def counts(self) -> list[str]:
        return [f"{self.live.row_count:,} lines shown", f"{self.live.kept:,}/{self.max_lines:,} kept"]

    # -- following ---------------------------------------------------------------
    def follow(self, service: str) -> None:
        """Show this service's replicas from the last lines on, and keep following."""
        self.service = service
        self.query_one("#log-service", Label).update(service)
        self.stop_reading()  # no line of the service before shows after the clear
        self.live.clear()
        self._stream(service)

    @work(exclusive=True, group=READING, exit_on_error=False)
    async def _stream(self, service: str) -> None:
        stack = stack_of(self)
        if stack is None:
            return
        await self.keep_reading(
            lambda: ("following", stack.logs(service, tail=200)),
            self.add_log_lines,
            ended="log stream ended; retrying",
            lost="logs unavailable",
        )

    # -- controls ----------------------------------------------------------------
    @on(Input.Changed, "#log-filter")
    def _filter(self, event: Input.Changed) -> None:
        needle = event.value.strip().lower()
        if not needle:
            self.live.set_filter(None)
        else:
            self.live.set_filter(lambda line: needle in line.text.lower() or needle in line.replica.lower())

    @on(Button.Pressed, "#log-clear")
    def _clear_pressed(self) -> None:
        self.action_clear()
