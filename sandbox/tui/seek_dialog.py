"""`g` in Messages: where the tap starts, as `watch --from` / `--offset` take it (sandbox/seek.py)."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from sandbox.seek import parse_from, parse_offset


@dataclass(frozen=True)
class Seek:
    since: float | None = None  # epoch seconds
    at: tuple[str, str] | None = None  # (topic or stream, position)
    text: str = ""


def parse_seek(text: str, backend: str, channel: str | None, now: float | None = None) -> Seek:
    """A time ("10m", "2026-12-02T10:00") or a position of `channel` ("0:42", a stream id); ValueError says why."""
    try:
        return Seek(since=parse_from(text, now), text=text.strip())
    except ValueError as not_a_time:
        try:
            position = parse_offset(text, backend)
        except ValueError:
            raise not_a_time from None
    if channel is None:
        raise ValueError(f"an offset ({text.strip()}) is a position in one topic or stream: choose it in the "
                         "topic list first")
    return Seek(at=(channel, position), text=f"{channel} {position}")


class SeekDialog(ModalScreen[str | None]):
    """One input; enter gives its text, escape nothing."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, backend: str, channel: str | None) -> None:
        super().__init__()
        self.backend, self.channel = backend, channel

    def compose(self) -> ComposeResult:
        offset = "0:42" if self.backend == "kafka" else "1764000000000-0"
        where = f" of {self.channel}" if self.channel else " (choose a topic first)"
        with Vertical(id="seek", classes="dialog"):
            yield Label("Show messages from a time, or an offset" + where)
            yield Input(placeholder=f"10m · 2026-12-02T10:00 · {offset}", id="seek-input")
            yield Label("[b]enter[/b] go · [b]esc[/b] cancel", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#seek", Vertical).border_title = "seek"
        self.query_one("#seek-input", Input).focus()

    @on(Input.Submitted, "#seek-input")
    def _go(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)
