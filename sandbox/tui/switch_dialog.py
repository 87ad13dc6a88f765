"""Confirm a backend switch, knowing how many tasks wait on the current broker."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from sandbox.tui.reporting import describe
from sandbox.tui.stack import stack_of

# The dialog's answer: what switch_backend is asked to do, or None to cancel.
MIGRATE, FORCE, SWITCH = "migrate", "force", "switch"


def pending_text(source: str, pending: dict[str, int]) -> str:
    total = sum(pending.values())
    if total == 0:
        return f"No tasks are waiting on {source.upper()}: nothing to carry over."
    detail = ", ".join(f"{agent} {count}" for agent, count in sorted(pending.items()) if count)
    return (
        f"{total} task{'s' if total != 1 else ''} waiting on {source.upper()} ({detail}).\n"
        f"Migrate moves them to the new broker; Force leaves them behind."
    )


class SwitchDialog(ModalScreen[str | None]):
    """Migrate / force / cancel; the counts load in the background."""

    BINDINGS = [
        Binding("escape", "dismiss(None)", "Cancel"),
        Binding("m", "choose('migrate')", "Migrate"),
        Binding("f", "choose('force')", "Force"),
    ]

    def __init__(self, source: str, target: str) -> None:
        super().__init__()
        self.source = source
        self.target = target
        self.pending: dict[str, int] | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="switch", classes="dialog"):
            yield Label(f"Switch the broker: {self.source.upper()} → {self.target.upper()}", classes="dialog-title")
            yield Static(f"Counting tasks waiting on {self.source.upper()}…", id="switch-pending")
            yield Static(
                "Workers stop, the other broker starts, workers start on it. "
                "Kafka's JVM takes a few seconds. The UI stays usable meanwhile.",
                classes="dialog-hint",
            )
            with Horizontal(classes="buttons"):
                yield Button("Migrate", id="migrate", variant="primary", disabled=True)
                yield Button("Force", id="force", variant="error")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.count()

    @work(exclusive=True, exit_on_error=False)
    async def count(self) -> None:
        stack = stack_of(self)
        if stack is None:
            self.show_pending({})
            return
        try:
            pending = await stack.count_pending()
        except Exception as error:  # the switch may still be forced
            self.query_one("#switch-pending", Static).update(
                f"Cannot count waiting tasks: {describe(error)}\nForce switches anyway."
            )
            return
        self.show_pending(pending)

    def show_pending(self, pending: dict[str, int]) -> None:
        self.pending = pending
        self.query_one("#switch-pending", Static).update(pending_text(self.source, pending))
        migrate = self.query_one("#migrate", Button)
        migrate.disabled = False
        if sum(pending.values()) == 0:
            migrate.label = f"Switch to {self.target.upper()}"
            self.query_one("#force", Button).display = False
        else:
            migrate.label = f"Migrate {sum(pending.values())}"
        migrate.focus()

    def action_choose(self, choice: str) -> None:
        if choice == MIGRATE and self.pending is None:
            return  # not counted yet
        if choice == MIGRATE and not sum((self.pending or {}).values()):
            choice = SWITCH
        self.dismiss(choice)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(None)
        else:
            self.action_choose(event.button.id or "")
