"""Send a task to an agent: JSON inputs checked as you type, the response pretty-printed, a history."""

from __future__ import annotations

import itertools
import json
import time
from functools import partial
from pathlib import Path
from typing import Any

from rich.json import JSON
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Input, Label, Select, Static, TextArea

from sandbox.bus import RequestTimeout
from sandbox.laddr_compat import matching_note
from sandbox.protocol import AGENTS
from sandbox.tui.formatting import fmt_ms, pretty_json, short_id
from sandbox.tui.reporting import describe
from sandbox.tui.stack import stack_of
from sandbox.tui.task_history import SentTask, TaskHistory

PRESET = '{"query": "test"}'  # the migration guide's test task
DEFAULT_TIMEOUT = 30.0


def check_json(text: str) -> tuple[Any, str | None]:
    """The parsed value, or an error that says where."""
    try:
        return json.loads(text), None
    except json.JSONDecodeError as error:
        return None, f"line {error.lineno}, column {error.colno}: {error.msg}"


def response_title(task: SentTask) -> Text:
    if task.state == "pending":
        sent = f" · task {short_id(task.task_id)}" if task.task_id else ""
        return Text(f"… waiting for {task.agent}{sent}", style="yellow")
    if task.state == "timeout":
        return Text(f"⏱ timeout: {task.error}", style="magenta")
    response = task.response
    if response is None:
        return Text(f"✘ {task.error}", style="red")
    mark, style = ("✔", "green") if response.ok else ("✘", "red")
    latency = fmt_ms(task.latency_ms)
    if response.duration_ms is not None:
        latency += f" ({fmt_ms(response.duration_ms)} in worker)"
    parts = [f"{mark} {response.status}", latency]
    if response.worker_id:
        parts.append(response.worker_id)
    parts.append(f"task {short_id(response.task_id)}")
    return Text(" · ".join(parts), style=style)


class JsonEditor(TextArea):
    """The inputs editor: tab / shift+tab move focus out (as in a form); ctrl+t indents."""

    BINDINGS = [
        Binding("ctrl+t", "indent", "Indent"),
        Binding("f7", "select_all", "Select all"),
    ]

    def action_indent(self) -> None:
        column = self.cursor_location[1]
        self.insert(" " * (self.indent_width - column % self.indent_width))


class SendPanel(Horizontal):
    """The form on the left, the response and the history on the right."""

    BINDINGS = [
        Binding("ctrl+s", "send", "Send", priority=False),
        Binding("ctrl+r", "preset", "Preset"),
    ]

    def __init__(self, *, inputs_file: Path | None = None, id: str | None = None) -> None:
        super().__init__(id=id)
        self.inputs_file = inputs_file
        self.inputs: dict[str, str] = self._load_inputs()  # the last inputs per agent
        self.agent: str = "researcher"  # the guide's example (any agent list falls back to its first)
        self._numbers = itertools.count(1)

    def compose(self) -> ComposeResult:
        with Vertical(id="send-form"):
            with Horizontal(classes="toolbar"):
                yield Label("Agent", classes="toolbar-title")
                yield Select([(a, a) for a in AGENTS], value=self.agent, allow_blank=False, id="send-agent", compact=True)
                yield Label("timeout s", classes="toolbar-title")
                yield Input(str(int(DEFAULT_TIMEOUT)), id="send-timeout", type="number", compact=True)
            yield JsonEditor(self.inputs.get(self.agent, PRESET), id="send-inputs", tab_behavior="focus", show_line_numbers=True)
            yield Label("", id="send-error")
            with Horizontal(classes="buttons"):
                yield Button("Preset", id="send-preset", compact=True, tooltip=f"inputs {PRESET} (ctrl+r)")
                yield Button("Send ctrl+s", id="send-button", variant="primary", compact=True)
        with Vertical(id="send-result"):
            yield Label("Send a task to see its response here", id="response-title")
            yield Label("", id="response-note")
            with VerticalScroll(id="response-scroll"):
                yield Static("", id="response-body")
            yield TaskHistory(id="history")

    def on_mount(self) -> None:
        self.query_one("#send-form").border_title = "Request"
        self.query_one("#send-result").border_title = "Response"
        self.query_one("#response-note").display = False
        self._validate()

    # -- agents ----------------------------------------------------------------
    def set_agents(self, names: list[str]) -> None:
        select = self.query_one("#send-agent", Select)
        select.set_options([(n, n) for n in names])
        select.value = self.agent if self.agent in names else names[0]

    @work(exclusive=True, group="agents", exit_on_error=False)
    async def load_agents(self) -> None:
        """Fill the agent list from the live registry (the standard five when it is empty)."""
        stack = stack_of(self)
        if stack is None:
            return
        try:
            names = await stack.agent_names()
        except Exception as error:  # the fallback list is still usable
            self.log.warning("registry unavailable", describe(error))
            names = list(stack.settings.agents)
        self.set_agents(names)

    @on(Select.Changed, "#send-agent")
    def _agent_changed(self, event: Select.Changed) -> None:
        if not isinstance(event.value, str) or event.value == self.agent:
            return
        editor = self.query_one("#send-inputs", TextArea)
        self.inputs[self.agent] = editor.text
        self.agent = event.value
        editor.text = self.inputs.get(self.agent, PRESET)

    # -- inputs ------------------------------------------------------------------
    @on(TextArea.Changed, "#send-inputs")
    def _validate(self) -> None:
        _, error = check_json(self.query_one("#send-inputs", TextArea).text)
        label = self.query_one("#send-error", Label)
        label.update(Text(f"✘ invalid JSON: {error}", style="red") if error else Text("✔ valid JSON", style="green"))
        label.set_class(bool(error), "-invalid")
        self.query_one("#send-button", Button).disabled = error is not None

    def focus_content(self) -> None:
        """Focus the inputs editor (when the tab comes up)."""
        self.query_one("#send-inputs", TextArea).focus()

    def action_preset(self) -> None:
        self.query_one("#send-inputs", TextArea).text = PRESET

    @on(Button.Pressed, "#send-preset")
    def _preset_pressed(self) -> None:
        self.action_preset()

    def _timeout(self) -> float:
        try:
            value = float(self.query_one("#send-timeout", Input).value)
        except ValueError:
            return DEFAULT_TIMEOUT
        return value if value > 0 else DEFAULT_TIMEOUT

    # -- sending -----------------------------------------------------------------
    @on(Button.Pressed, "#send-button")
    def _send_pressed(self) -> None:
        self.action_send()

    def action_send(self) -> None:
        text = self.query_one("#send-inputs", TextArea).text
        payload, error = check_json(text)
        if error is not None:
            self.app.notify(f"Fix the JSON first: {error}", severity="error", timeout=4)
            return
        self.inputs[self.agent] = text
        self._save_inputs()
        task = SentTask(number=next(self._numbers), agent=self.agent, payload=payload)
        self.add_sent(task)
        self._request(task, self._timeout())

    def add_sent(self, task: SentTask) -> None:
        self.query_one(TaskHistory).add_task(task)
        self.show_task(task)

    @work(group="send", exit_on_error=False)
    async def _request(self, task: SentTask, timeout: float) -> None:
        stack = stack_of(self)
        started = time.perf_counter()
        try:
            if stack is None:
                raise RuntimeError("no stack attached (showing fixed data)")
            response = await stack.request(task.agent, task.payload, timeout, sent=partial(self._sent, task))
        except RequestTimeout as error:
            task.state, task.error, task.task_id = "timeout", str(error), error.task_id
        except Exception as error:  # shown in the history and the response pane
            task.state, task.error = "error", describe(error)
        else:
            task.response, task.task_id = response, response.task_id
            task.state = "success" if response.ok else "error"
            task.error = response.error
        task.latency_ms = (time.perf_counter() - started) * 1000
        self.finish(task)
        if task.state in ("error", "timeout") and task.response is None:
            self.app.notify(task.error or task.state, title=f"Send to {task.agent}", severity="error", timeout=6)

    def _sent(self, task: SentTask, task_id: str) -> None:
        """The task is going out: its id shows from now on, so it can be followed in Logs."""
        task.task_id = task_id
        self.query_one(TaskHistory).update_task(task)
        if self.query_one(TaskHistory).shown is task:
            self.show_task(task)

    def finish(self, task: SentTask) -> None:
        """Record how a task ended (also used to show fixed data)."""
        self.query_one(TaskHistory).update_task(task)
        self.show_task(task)

    def show_task(self, task: SentTask) -> None:
        self.query_one(TaskHistory).shown = task
        self.query_one("#response-title", Label).update(response_title(task))
        note = matching_note(task.response) if task.response is not None else None
        note_label = self.query_one("#response-note", Label)
        note_label.update(Text(f"⚠ {note}", style="yellow") if note else "")
        note_label.display = bool(note)
        body = self.query_one("#response-body", Static)
        if task.response is not None:
            body.update(JSON(pretty_json(task.response.to_dict())))
        else:
            request = {"agent": task.agent, "inputs": task.payload}
            body.update(JSON(pretty_json(request)))

    @on(TaskHistory.Picked)
    def _picked(self, event: TaskHistory.Picked) -> None:
        self.show_task(event.task)

    # -- remembering inputs --------------------------------------------------------
    def _load_inputs(self) -> dict[str, str]:
        if self.inputs_file is None or not self.inputs_file.exists():
            return {}
        try:
            data = json.loads(self.inputs_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # a broken file only loses remembered inputs
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _save_inputs(self) -> None:
        if self.inputs_file is None:
            return
        try:
            self.inputs_file.parent.mkdir(parents=True, exist_ok=True)
            self.inputs_file.write_text(json.dumps(self.inputs, indent=2), encoding="utf-8")
        except OSError as error:
            self.log.warning("cannot remember inputs", error)

