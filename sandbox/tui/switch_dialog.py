"""Confirm a backend switch, knowing how many tasks wait on the current broker."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from sandbox.switch import WaitingTasks
from sandbox.tui.footer import Footer
from sandbox.tui.reporting import describe
from sandbox.tui.stack import stack_of

# The dialog's answer: what switch_backend is asked to do, or None to cancel.
MIGRATE, FORCE, SWITCH = "migrate", "force", "switch"


def _per_agent(counts: dict[str, int]) -> str:
    return ", ".join(f"{agent} {count}" for agent, count in sorted(counts.items()) if count)


def pending_text(source: str, waiting: WaitingTasks) -> str:
    if waiting.total == 0:
        return f"No tasks are waiting on {source.upper()}: nothing to carry over."
    lines = []
    if busy := sum(waiting.in_progress.values()):
        lines.append(f"{busy} in progress ({_per_agent(waiting.in_progress)}): held by live workers, "
                     "they finish before the workers stop.")
    if queued := sum(waiting.queued.values()):
        lines.append(f"{queued} queued or held by a dead worker ({_per_agent(waiting.queued)}): "
                     "Migrate moves them to the new broker; Force leaves them behind.")
    else:
        lines.append("Migrate moves whatever is still unanswered when the workers stop.")
    return "\n".join(lines)


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
        self.pending: WaitingTasks | None = None

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
        yield Footer()  # the letters that answer it

    def on_mount(self) -> None:
        self.count()

    @work(exclusive=True, exit_on_error=False)
    async def count(self) -> None:
        stack = stack_of(self)
        if stack is None:
            self.show_pending(WaitingTasks())
            return
        try:
            pending = await stack.count_pending()
        except Exception as error:  # the switch may still be forced
            self.query_one("#switch-pending", Static).update(
                f"Cannot count waiting tasks: {describe(error)}\nForce switches anyway."
            )
            return
        self.show_pending(pending)

    def show_pending(self, pending: WaitingTasks) -> None:
        self.pending = pending
        self.query_one("#switch-pending", Static).update(pending_text(self.source, pending))
        migrate = self.query_one("#migrate", Button)
        migrate.disabled = False
        if pending.total == 0:
            migrate.label = f"Switch to {self.target.upper()}"
            self.query_one("#force", Button).display = False
        else:  # in progress or not, what is unanswered when the workers stop moves
            queued = sum(pending.queued.values())
            migrate.label = f"Migrate {queued}" if queued else "Migrate"
        migrate.focus()

    def action_choose(self, choice: str) -> None:
        if choice == MIGRATE and self.pending is None:
            return  # not counted yet
        if choice == MIGRATE and not (self.pending and self.pending.total):
            choice = SWITCH
        self.dismiss(choice)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(None)
        else:
            self.action_choose(event.button.id or "")
