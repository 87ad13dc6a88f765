"""The one screen: header, services, and the Send / Logs / Messages / Queues tabs.

It owns the stack's lifecycle (launch, backend switch, take down) because those
touch every panel; each panel owns its own polling and streams.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Input, TabbedContent, TabPane, TextArea

from sandbox.protocol import other_backend
from sandbox.switch import PendingTasks
from sandbox.tui.footer import Footer
from sandbox.tui.formatting import fmt_seconds
from sandbox.tui.dead_letters_view import DeadLettersView
from sandbox.tui.header_bar import HeaderBar
from sandbox.tui.logs_view import LogsView
from sandbox.tui.messages_view import MessagesView
from sandbox.tui.queues_view import QueuesView
from sandbox.tui.reporting import report
from sandbox.tui.send_panel import SendPanel
from sandbox.tui.services_panel import ServicesPanel
from sandbox.tui.stack import Stack, stack_of
from sandbox.tui.switch_dialog import FORCE, MIGRATE, SwitchDialog
from sandbox.tui.task_history import TaskHistory
from sandbox.tui.resend import resend_selected
from sandbox.tui.trace_screen import open_trace

# Each tab's panel; `focus_content()` puts the focus where its keys work.
TAB_PANELS = {"send": SendPanel, "logs": LogsView, "messages": MessagesView, "queues": QueuesView,
              "dlq": DeadLettersView}
TABS = tuple(TAB_PANELS)


class MainScreen(Screen[None]):
    BINDINGS = [
        Binding("b", "switch_backend", "Redis⇄Kafka", tooltip="Switch the broker (asks first)"),
        Binding("1", "show_tab('send')", "Send", show=False),
        Binding("2", "show_tab('logs')", "Logs", show=False),
        Binding("3", "show_tab('messages')", "Messages", show=False),
        Binding("4", "show_tab('queues')", "Queues", show=False),
        Binding("5", "show_tab('dlq')", "Dead letters", show=False),
        # From anywhere, not only from inside the form: the Send tab comes up and sends.
        Binding("ctrl+s", "send_task", "Send", show=False),
        Binding("escape", "leave_input", "Leave input", show=False, tooltip="leave an input or the editor"),
        Binding("t", "trace", "Trace", tooltip="Trace the task of the Messages / Send-history row under the cursor"),
        Binding("a", "resend", "Again", tooltip="Send the selected row's task again as a new task"),
    ]

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        yield ServicesPanel(id="services")
        with TabbedContent(id="tabs", initial="send-tab"):
            with TabPane("1 Send", id="send-tab"):
                yield SendPanel(id="send", inputs_file=getattr(self.app, "inputs_file", None))
            with TabPane("2 Logs", id="logs-tab"):
                yield LogsView(id="logs")
            with TabPane("3 Messages", id="messages-tab"):
                yield MessagesView(id="messages")
            with TabPane("4 Queues", id="queues-tab"):
                yield QueuesView(id="queues")
            with TabPane("5 Dead letters", id="dlq-tab"):
                yield DeadLettersView(id="dlq")
        yield Footer()

    def action_send_task(self) -> None:
        self.query_one(TabbedContent).active = "send-tab"
        self.query_one(SendPanel).action_send()

    def action_trace(self) -> None:
        open_trace(self)

    def action_resend(self) -> None:
        resend_selected(self)

    _launched = False  # the launch finished (well or not): outages are news from now on

    @property
    def header(self) -> HeaderBar:
        return self.query_one(HeaderBar)

    def on_mount(self) -> None:
        stack = stack_of(self)
        if stack is None:  # fixed data: tests and screenshots feed the widgets
            return
        self.header.set_runtime(stack.runtime_name)
        self.header.set_backend(stack.requested_backend or stack.settings.queue_backend)
        self.header.set_broker(stack.broker_address())
        self.query_one(ServicesPanel).start_polling()
        self.launch()

    # -- progress from runtimes (the Stack hands it over on the UI's own loop) --------
    def progress(self, line: str) -> None:
        self.header.set_progress(line)

    # -- launch ----------------------------------------------------------------
    @work(exclusive=True, group="stack", exit_on_error=False)
    async def launch(self) -> None:
        stack = stack_of(self)
        assert stack is not None
        services = self.query_one(ServicesPanel)
        self.header.set_progress("looking for a running stack…")
        started = time.monotonic()
        try:
            backend = await stack.start(self.progress)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._launched = True
            self.header.set_progress(None)
            services.quiet = False
            report(self, "Could not start the stack", error, timeout=30)
            self.notify("Retry from the command palette (ctrl+p): Start the stack, or "
                        f"Start on the other runtime ({stack.other_runtime})", timeout=30)
            return
        self._launched = True
        self.header.set_progress(None)
        services.quiet = False
        how = "Attached to" if stack.attached else "Started"
        took = "" if stack.attached else f" in {fmt_seconds(time.monotonic() - started)}"
        self.notify(f"{how} the {backend.upper()} stack{took}", timeout=5)
        wanted = stack.requested_backend
        if stack.attached and wanted and wanted != backend:
            self.notify(f"The running stack uses {backend.upper()}; press b to switch to {wanted.upper()}", severity="warning")
        self.stack_ready(stack)

    def action_start_stack(self) -> None:
        """Launch again (after a failed start, or after the stack was stopped elsewhere)."""
        stack = stack_of(self)
        if stack is not None and not stack.switching:
            self.launch()  # attaches (and reconnects) when a stack already runs

    def action_other_runtime(self) -> None:
        """After a failed start: the same stack on the other runtime (Compose ⇄ local)."""
        stack = stack_of(self)
        if stack is None or stack.switching:
            return
        if stack.bus is not None:
            self.notify(f"The stack runs on the {stack.runtime_name} runtime; take it down (q) first",
                        severity="warning", timeout=5)
            return
        stack.use_runtime(stack.other_runtime)
        self.header.set_runtime(stack.runtime_name)
        self.header.set_broker(stack.broker_address())
        self.launch()

    def stack_ready(self, stack: Stack) -> None:
        """(Re)start everything that reads the broker, after launch or a switch."""
        self.header.set_backend(stack.backend)
        self.header.set_broker(stack.broker_address())
        self.query_one(SendPanel).load_agents()
        self.query_one(MessagesView).start_tap()
        self.query_one(QueuesView).start_refresh()
        self.query_one(DeadLettersView).start_refresh()
        self.query_one(ServicesPanel).poll()

    # -- backend switch ----------------------------------------------------------
    def action_switch_backend(self) -> None:
        stack = stack_of(self)
        if stack is None:
            self.notify("No stack attached (showing fixed data)", severity="warning", timeout=3)
            return
        if stack.switching:
            self.notify("Already switching; see the progress at the top", timeout=3)
            return
        if stack.backend is None:
            self.notify("The stack is not up yet", severity="warning", timeout=3)
            return
        target = other_backend(stack.backend)
        self.app.push_screen(SwitchDialog(stack.backend, target), partial(self._switch_chosen, target))

    def _switch_chosen(self, target: str, choice: str | None) -> None:
        if choice is not None:
            self.switch(target, choice)

    @work(exclusive=True, group="stack", exit_on_error=False)
    async def switch(self, target: str, choice: str) -> None:
        stack = stack_of(self)
        assert stack is not None
        source = stack.backend or "?"
        self.query_one(MessagesView).stop_reading()  # its broker is going away
        self.header.set_progress(f"switching {source.upper()} → {target.upper()}…")
        try:
            result = await stack.switch(
                target, migrate=choice == MIGRATE, force=choice == FORCE, progress=self.progress
            )
        except asyncio.CancelledError:
            raise
        except PendingTasks as error:  # tasks arrived after the dialog counted none
            self.notify(
                f"{error.count} tasks are waiting on {source.upper()}; press b and choose Migrate or Force",
                severity="warning",
                timeout=8,
            )
        except Exception as error:
            report(self, f"Switch to {target.upper()} failed", error, timeout=20)
        else:
            moved = result.moved
            extra = f", {moved} task{'s' if moved != 1 else ''} moved" if moved else ""
            self.notify(f"Switched {source.upper()} → {target.upper()} in {fmt_seconds(result.seconds)}{extra}", timeout=8)
        finally:
            self.header.set_progress(None)
        if stack.bus is not None:
            self.stack_ready(stack)

    # -- take down (from the quit dialog) --------------------------------------------
    @work(exclusive=True, group="stack", exit_on_error=False)
    async def take_down(self) -> None:
        stack = stack_of(self)
        assert stack is not None
        self.query_one(MessagesView).stop_reading()
        self.query_one(LogsView).stop_reading()
        self.header.set_progress("taking the stack down…")
        try:
            await stack.down(self.progress)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self.header.set_progress(None)
            report(self, "Could not take the stack down", error, timeout=20)
            return
        self.app.exit()

    # -- tabs ------------------------------------------------------------------
    def action_leave_input(self) -> None:
        """Escape from an input or the editor: back to the tab's lines or table, where its keys work."""
        if not isinstance(self.focused, (Input, TextArea)):
            return
        name = self.query_one(TabbedContent).active.removesuffix("-tab")
        if name == "send":
            self.query_one(TaskHistory).focus()
        else:
            self.query_one(TAB_PANELS[name]).focus_content()

    def action_show_tab(self, name: str) -> None:
        self.query_one(TabbedContent).active = f"{name}-tab"
        self.query_one(TAB_PANELS[name]).focus_content()

    @on(ServicesPanel.ShowLogs)
    def _show_logs(self, event: ServicesPanel.ShowLogs) -> None:
        self.query_one(LogsView).follow(event.service)
        self.action_show_tab("logs")

    @on(ServicesPanel.Updated)
    def _services_updated(self, event: ServicesPanel.Updated) -> None:
        stack = stack_of(self)
        busy = None
        if stack is not None and stack.stopping:
            busy = "stopping"
        elif stack is not None and stack.switching:
            busy = "switching"
        elif stack is not None and stack.bus is None and not self._launched:
            busy = "starting"
        self.header.set_health(event.services, error=event.error, busy=busy)
