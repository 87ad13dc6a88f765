"""The Dead letters tab: what could not be handled, why, how often it was tried; requeue one or all, drop one."""

from __future__ import annotations

from datetime import datetime
from functools import partial

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.timer import Timer
from textual.widgets import DataTable, Label

from sandbox.bus import DeadLetter
from sandbox.export import letter_doc
from sandbox.protocol import agent_of_channel
from sandbox.trace import ANY_ID
from sandbox.tui.confirm_dialog import ConfirmDialog
from sandbox.tui.export import export
from sandbox.tui.formatting import one_line
from sandbox.tui.reporting import ErrorOnce, describe
from sandbox.tui.stack import stack_of

COLUMNS = ("time", "agent", "reason", "deliveries", "source", "payload")


def task_id_of(letter: DeadLetter) -> str | None:
    found = ANY_ID.search(letter.raw[:4096].decode(errors="replace"))
    return found.group(0) if found else None


class DeadLettersView(Vertical):
    """The DLQ of the current broker, read every 3 s."""

    BINDINGS = [
        Binding("r", "requeue", "Requeue", tooltip="Send the selected dead letter back to its queue"),
        Binding("A", "requeue_all", "Requeue all", tooltip="Send every dead letter back to its queue"),
        Binding("d,delete", "drop", "Drop", tooltip="Drop the selected dead letter for good (asks first)"),
        Binding("x", "export", "Export", tooltip="Save the dead letters shown as JSONL (as dlq --json prints them)"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.letters: dict[str, DeadLetter] = {}
        self._errors = ErrorOnce()
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield DataTable(id="dlq-table", cursor_type="row", zebra_stripes=True)
        yield Label("", id="dlq-status", classes="status-line")

    def on_mount(self) -> None:
        self.table.add_columns(*COLUMNS)

    @property
    def table(self) -> DataTable:
        return self.query_one("#dlq-table", DataTable)

    def focus_content(self) -> None:
        self.table.focus()

    def show_letters(self, letters: list[DeadLetter]) -> None:
        table = self.table
        row = table.cursor_row
        table.clear()
        self.letters = {d.id: d for d in letters}
        for d in letters:
            when = datetime.fromtimestamp(d.timestamp).strftime("%H:%M:%S") if d.timestamp else "?"
            table.add_row(when, agent_of_channel(d.source) or "?", Text(d.reason[:60], style="red"),
                          Text(str(d.delivery_count), justify="right"), d.source,
                          one_line(d.raw.decode(errors="replace"))[:80], key=d.id)
        if 0 <= row < table.row_count:
            table.move_cursor(row=row, animate=False)
        self.query_one("#dlq-status", Label).update(
            f"{len(letters)} dead letter(s) · r requeue · A requeue all · d drop · t trace · x export")

    @property
    def selected(self) -> DeadLetter | None:
        table = self.table
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.letters.get(key or "")

    def start_refresh(self, every: float = 3.0) -> None:
        self.reload()
        if self._timer is None:
            self._timer = self.set_interval(every, self.reload, name="refresh dead letters")

    @work(group="dlq", exclusive=True, exit_on_error=False)
    async def reload(self) -> None:
        stack = stack_of(self)
        if stack is None or stack.switching or stack.bus is None:
            return
        try:
            letters = await stack.dead_letters()
        except Exception as error:  # shown once; the next refresh tries again
            self._errors.failed(self, "Dead letters", error)
            self.query_one("#dlq-status", Label).update(f"unavailable: {describe(error)}")
            return
        self._errors.ok(self, "Dead letters")
        self.show_letters(letters)

    # -- actions -------------------------------------------------------------------
    def action_requeue(self) -> None:
        letter = self.selected
        if letter is None:
            self.notify("No dead letter selected", severity="warning", timeout=3)
            return
        self.act([letter], "requeue")

    def action_requeue_all(self) -> None:
        if not self.letters:
            self.notify("No dead letters", timeout=3)
            return
        self.act(list(self.letters.values()), "requeue")

    def action_drop(self) -> None:
        letter = self.selected
        if letter is None:
            self.notify("No dead letter selected", severity="warning", timeout=3)
            return
        question = f"Drop dead letter {letter.id} ({letter.reason[:80]}) for good?"
        self.app.push_screen(ConfirmDialog("Drop a dead letter", question), partial(self._drop_chosen, letter))

    def action_export(self) -> None:
        export(self, "dead-letters", [letter_doc(d) for d in self.letters.values()], "dead letters")

    def _drop_chosen(self, letter: DeadLetter, yes: bool | None) -> None:
        if yes:
            self.act([letter], "drop")

    @work(group="dlq-act", exit_on_error=False)
    async def act(self, letters: list[DeadLetter], what: str) -> None:
        stack = stack_of(self)
        if stack is None:
            return
        try:
            for letter in letters:
                if what == "drop":
                    await stack.drop_dead_letter(letter)
                else:
                    await stack.requeue_dead_letter(letter)
        except Exception as error:
            self.notify(f"Could not {what}: {describe(error)}", severity="error", timeout=8)
            return
        done = "dropped" if what == "drop" else "sent back to its queue" if len(letters) == 1 else "sent back"
        self.notify(f"{len(letters)} dead letter(s) {done}", timeout=4)
        self.reload()
