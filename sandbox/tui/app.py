"""`laddr-sandbox launch`: the app only composes screens; panels do their own work."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from textual.app import App, SystemCommand
from textual.screen import Screen
from textual.binding import Binding, BindingType
from textual.logging import TextualHandler

from sandbox.config import Settings
from sandbox.runtime.base import Runtime
from sandbox.tui import heap
from sandbox.tui.commands import SandboxCommands
from sandbox.tui.dead_letters_view import DeadLettersView
from sandbox.tui.help_screen import HelpScreen, Sections
from sandbox.tui.live_lines import LiveLines
from sandbox.tui.logs_view import LogsView
from sandbox.tui.main_screen import MainScreen
from sandbox.tui.messages_view import MessagesView
from sandbox.tui.quit_dialog import DOWN, LEAVE, QuitDialog
from sandbox.tui.send_panel import JsonEditor, SendPanel
from sandbox.tui.services_panel import ServicesPanel
from sandbox.tui.stack import Stack
from sandbox.tui.switch_dialog import SwitchDialog


class SandboxApp(App[None]):
    """The sandbox's face. With no runtime it shows whatever data the widgets are fed."""

    CSS_PATH = "app.tcss"
    TITLE = "laddr-sandbox"
    COMMANDS = App.COMMANDS | {SandboxCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
        Binding("question_mark,f1", "help", "Help", key_display="?"),
    ]
    # Classes on the screen for narrow / short terminals (see app.tcss).
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (32, "-tall")]

    def __init__(
        self,
        runtime: Runtime | None = None,
        settings: Settings | None = None,
        backend: str | None = None,
        *,
        inputs_file: Path | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings or Settings()
        self.stack: Stack | None = Stack(runtime, self.settings, backend) if runtime is not None else None
        self.inputs_file = inputs_file
        self.main = MainScreen()

    def get_default_screen(self) -> MainScreen:
        return self.main

    def on_ready(self) -> None:
        heap.settle()  # start-up is done: its objects are never walked by the GC again

    # -- help ------------------------------------------------------------------
    def key_sections(self) -> Sections:
        return [
            ("Anywhere", [SandboxApp, MainScreen]),
            ("Services", [ServicesPanel]),
            ("Send", [SendPanel, JsonEditor]),
            ("Logs", [LogsView]),
            ("Messages", [MessagesView, LiveLines]),
            ("Switch dialog", [SwitchDialog]),
            ("Quit dialog", [QuitDialog]),
            ("Dead letters", [DeadLettersView]),
        ]

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """Textual's palette entries but its Quit: ours asks about the stack (one Quit in the palette)."""
        return (command for command in super().get_system_commands(screen) if command.title != "Quit")

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.key_sections()))

    # -- quitting --------------------------------------------------------------
    async def action_quit(self) -> None:
        """Ask what to do with the stack; an external or absent stack needs no question."""
        stack = self.stack
        if stack is None or not stack.manages_processes:
            await self._leave()
            return
        if isinstance(self.screen, QuitDialog):
            return
        self.push_screen(QuitDialog(stack.backend, stack.runtime_name), self._quit_chosen)

    async def _quit_chosen(self, choice: str | None) -> None:
        if choice == LEAVE:
            await self._leave()
        elif choice == DOWN:
            self.main.take_down()

    async def _leave(self) -> None:
        if self.stack is not None:
            await self.stack.close()
        self.exit()


def remembered_inputs_file() -> Path | None:
    """Remember the last inputs per agent in the local state folder, when there is one."""
    from sandbox.runtime import state_file

    return state_file("tui-inputs.json")


@contextlib.contextmanager
def logging_into_textual() -> Iterator[None]:
    """Library warnings (aiokafka, redis) go to Textual's log, not over the screen."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers = [TextualHandler()]
    root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.handlers, level = saved
        root.setLevel(level)


def run_tui(runtime_kind: str | None, backend: str | None, settings: Settings) -> None:
    """Entry for the CLI's `launch`."""
    from sandbox.runtime import choose_runtime

    # The embedded default is local; --runtime auto picks Compose only where it can run.
    runtime = choose_runtime(runtime_kind, settings, default="local", backend=backend,
                             say=lambda line: print(line, file=sys.stderr))
    with logging_into_textual():
        SandboxApp(runtime, settings, backend, inputs_file=remembered_inputs_file()).run()
