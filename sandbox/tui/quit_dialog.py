"""Quitting asks what to do with the stack: leave it running, or take it down."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from sandbox.tui.footer import Footer

LEAVE, DOWN = "leave", "down"


class QuitDialog(ModalScreen[str | None]):
    BINDINGS = [
        Binding("escape", "dismiss(None)", "Cancel"),
        Binding("l", "dismiss('leave')", "Leave running"),
        Binding("d", "dismiss('down')", "Take down"),
        Binding("q,ctrl+q", "dismiss('leave')", "Quit", show=False),
    ]

    def __init__(self, backend: str | None, runtime: str) -> None:
        super().__init__()
        self.backend = backend
        self.runtime = runtime

    def compose(self) -> ComposeResult:
        with Vertical(id="quit", classes="dialog"):
            yield Label("Quit laddr-sandbox", classes="dialog-title")
            stack = f"the {self.backend.upper()} stack" if self.backend else "the stack"
            yield Static(
                f"Leave {stack} ({self.runtime} runtime) running for the CLI and later launches, "
                f"or take it down now?"
            )
            with Horizontal(classes="buttons"):
                yield Button("Leave running", id=LEAVE, variant="primary")
                yield Button("Take down", id=DOWN, variant="error")
                yield Button("Cancel", id="cancel")
        yield Footer()  # the letters that answer it

    def on_mount(self) -> None:
        self.query_one(f"#{LEAVE}", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id if event.button.id in (LEAVE, DOWN) else None)
