"""One tapped message, whole: where it was, and its body as pretty JSON."""

from __future__ import annotations

from rich.json import JSON
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from sandbox.bus import TapMessage
from sandbox.tui.formatting import clock, pretty_json
from sandbox.tui.message_rows import MessageRow


def summary(message: TapMessage | MessageRow) -> str:
    parts = [message.channel, message.kind, clock(message.timestamp)]
    if message.position:
        parts.append(f"at {message.position}")
    parts.append(f"{len(message.raw):,} bytes")
    return " · ".join(parts)


class MessageDetail(ModalScreen[None]):
    """The message's JSON; c copies it, escape closes."""

    BINDINGS = [
        Binding("escape,q", "dismiss", "Close"),
        Binding("c", "copy", "Copy JSON"),
    ]

    def __init__(self, message: TapMessage | MessageRow) -> None:
        super().__init__()
        self.message = message
        self.decoded = message.doc  # a row decodes its body on each ask: once here

    @property
    def body(self) -> str:
        if self.decoded is not None:
            return pretty_json(self.decoded)
        return self.message.raw.decode("utf-8", "replace")

    def compose(self) -> ComposeResult:
        message = self.message
        with Vertical(id="detail", classes="dialog"):
            yield Label(summary(message), id="detail-summary")
            if self.decoded is None:
                yield Label(Text("not JSON: shown as received", style="red"), id="detail-warning")
            with VerticalScroll(id="detail-body"):
                if self.decoded is not None:
                    yield Static(JSON(self.body), id="detail-json")
                else:
                    yield Static(Text(self.body), id="detail-json")
            yield Label("[b]c[/b] copy · [b]esc[/b] close", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#detail", Vertical).border_title = f"task {self.message.task_id or '?'}"
        self.query_one("#detail-body").focus()

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.body)
        self.notify("Copied to the clipboard", timeout=2)
