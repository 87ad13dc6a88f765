"""Follow one service's logs: every replica interleaved, tagged in its own colour."""

from __future__ import annotations

import asyncio
import re

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label

from sandbox.runtime.base import LogLine
from sandbox.tui.formatting import clock, replica_colour
from sandbox.tui.live_lines import LiveControls, LiveLines
from sandbox.tui.reporting import describe
from sandbox.tui.stack import stack_of

MAX_TAG = 24
# "2026-11-27 10:04:14,499 " at the start of a line: shown once, in our own time column
LEADING_STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?\s*")


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


class LogsView(LiveControls, Vertical):
    """A bounded, filterable, pausable tail of a service's replicas."""

    FILTER_INPUT = "#log-filter"
    PAUSE_BUTTON = "#log-pause"
    BINDINGS = [
        Binding("slash", "focus_filter", "Filter"),
        Binding("p", "pause", "Pause/resume"),
        Binding("c", "clear", "Clear"),
    ]

    def __init__(self, *, max_lines: int = 5_000, id: str | None = None) -> None:
        super().__init__(id=id)
        self.max_lines = max_lines
        self.service: str | None = None
        self.tag_width = 8  # grows to the longest replica name seen, so columns line up
        self._status = ""

    def compose(self) -> ComposeResult:
        with Horizontal(classes="toolbar"):
            yield Label("no service", id="log-service", classes="toolbar-title")
            yield Input(placeholder="filter logs…  (/)", id="log-filter", compact=True)
            yield Button("Pause", id="log-pause", compact=True)
            yield Button("Clear", id="log-clear", compact=True)
        self.live: LiveLines[LogLine] = LiveLines(
            self.format_line, keep=self.max_lines, selectable=False, item_width=self.line_width, id="log-lines"
        )
        yield self.live
        yield Label("", id="log-status", classes="status-line")

    def on_mount(self) -> None:
        self.set_interval(0.5, self._show_status)

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
    def add_log_lines(self, lines: list[LogLine]) -> None:
        self.live.add(lines)

    def flush(self) -> None:
        self.live.flush()
        self._show_status()

    def _show_status(self, note: str | None = None) -> None:
        if note is not None:
            self._status = note
        live = self.live
        parts = [f"{live.row_count:,} lines shown", f"{live.kept:,}/{self.max_lines:,} kept"]
        if live.paused:
            parts.append(f"PAUSED ({live.held:,} new)")
        if self._status:
            parts.append(self._status)
        self.query_one("#log-status", Label).update(" · ".join(parts))

    # -- following ---------------------------------------------------------------
    def follow(self, service: str) -> None:
        """Show this service's replicas from the last lines on, and keep following."""
        self.service = service
        self.query_one("#log-service", Label).update(service)
        self.live.clear()
        self._stream(service)

    @work(exclusive=True, group="logs", exit_on_error=False)
    async def _stream(self, service: str) -> None:
        stack = stack_of(self)
        if stack is None:
            return
        while True:
            self._show_status("following")
            try:
                count = 0
                async for line in stack.logs(service, tail=200):
                    self.live.add((line,))
                    count += 1
                    if count % 256 == 0:  # a burst must not starve the UI
                        await asyncio.sleep(0)
                self._show_status("log stream ended; retrying")
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._show_status(f"logs unavailable: {describe(error)}")
            await asyncio.sleep(2)

    # -- controls ----------------------------------------------------------------
    @on(Input.Changed, "#log-filter")
    def _filter(self, event: Input.Changed) -> None:
        needle = event.value.strip().lower()
        if not needle:
            self.live.set_filter(None)
        else:
            self.live.set_filter(lambda line: needle in line.text.lower() or needle in line.replica.lower())

    @on(Input.Submitted, "#log-filter")
    def _filter_done(self) -> None:
        self.live.focus()

    @on(Button.Pressed, "#log-pause")
    def _pause_pressed(self) -> None:
        self.action_pause()

    @on(Button.Pressed, "#log-clear")
    def _clear_pressed(self) -> None:
        self.action_clear()
