"""The key table, built from the widgets' own BINDINGS so it never drifts from what the keys do."""

from __future__ import annotations

from dataclasses import replace

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

Sections = list[tuple[str, list[type]]]


def bindings_of(cls: type) -> list[Binding]:
    """The bindings a class declares itself (not inherited), as Binding objects."""
    found = []
    for entry in cls.__dict__.get("BINDINGS", []):
        binding = entry if isinstance(entry, Binding) else Binding(*entry)
        if binding.description:
            found.append(binding)
    return found


class HelpScreen(ModalScreen[None]):
    """What every key does, where it works."""

    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "Close")]

    def __init__(self, sections: Sections) -> None:
        super().__init__()
        self.sections = sections

    def key_table(self) -> Table:
        table = Table(box=None, show_header=False, padding=(0, 2, 0, 0), expand=True)
        table.add_column("where", style="bold", no_wrap=True)
        table.add_column("keys", style="bold cyan", no_wrap=True)
        table.add_column("does")
        for title, classes in self.sections:
            where = title
            for cls in classes:
                for binding in bindings_of(cls):
                    keys = " ".join(
                        self.app.get_key_display(replace(binding, key=k.strip(), key_display=None))
                        for k in binding.key.split(",")
                    )
                    table.add_row(where, keys, binding.tooltip or binding.description)
                    where = ""
        table.add_row("Anywhere", "^p", "command palette: every action, themes, screenshot")
        table.add_row("", "tab", "move between panels (the mouse works too)")
        return table

    def compose(self) -> ComposeResult:
        with Vertical(id="help", classes="dialog"):
            yield Label("Keys", classes="dialog-title")
            with VerticalScroll():
                yield Static(self.key_table(), id="help-table")
            yield Label("[b]esc[/b] close", classes="dialog-hint")
