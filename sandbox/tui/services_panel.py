"""The services of the stack, one row each (replicas folded, as lazydocker does), with actions on the row."""

from __future__ import annotations

import asyncio

from rich.text import Text
from textual import work
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from sandbox.runtime.base import ServiceStatus
from sandbox.tui.formatting import styled
from sandbox.tui.reporting import ErrorOnce, report
from sandbox.tui.stack import stack_of

COLUMNS = (("Service", "name"), ("Replicas", "replicas"), ("State", "state"), ("Health", "health"), ("Ports", "ports"),
           ("Note", "note"))
MAX_REPLICAS = 64


def cells(service: ServiceStatus) -> tuple[Text | str, ...]:
    replicas = Text(service.replicas_label, style="" if service.running == service.desired else "yellow")
    ports = ",".join(str(p) for p in service.ports) or "-"
    note = Text(service.note, style="yellow") if service.note else ""  # e.g. a Laddr worker on the NoOp LLM
    return (service.name, replicas, styled(service.state), styled(service.health), ports, note)


class ServicesPanel(DataTable):
    """Services with replicas, state, health and ports; keys act on the selected row."""

    BINDINGS = [
        Binding("plus,equals_sign", "scale(1)", "Scale +", tooltip="Add a replica"),
        Binding("minus", "scale(-1)", "Scale -", tooltip="Remove a replica"),
        Binding("r", "restart", "Restart"),
        Binding("l", "logs", "Logs", tooltip="Follow this service's logs"),
        Binding("k", "kill", "Kill -9", tooltip="kill -9 a replica to watch redelivery"),
    ]

    class Updated(Message):
        """Fresh service states (the header summarises them)."""

        def __init__(self, services: list[ServiceStatus], error: str | None = None) -> None:
            super().__init__()
            self.services = services
            self.error = error

    class ShowLogs(Message):
        def __init__(self, service: str) -> None:
            super().__init__()
            self.service = service

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self.services: dict[str, ServiceStatus] = {}
        self._errors = ErrorOnce()
        self._polling = False
        self._wanted: dict[str, int] = {}  # replicas asked for and not yet applied: every key press counts
        self._scaling = asyncio.Lock()  # one scale at a time, always to the latest number asked for
        self.quiet = True  # while the stack starts, failing polls are expected

    def on_mount(self) -> None:
        self.border_title = "Services"
        for label, key in COLUMNS:
            self.add_column(label, key=key)

    # -- data ------------------------------------------------------------------
    def update_services(self, services: list[ServiceStatus]) -> None:
        """Show these services; rows are updated in place so the selection stays put."""
        names = [s.name for s in services]
        for service in services:  # a poll during a scale shows what was asked, not the old number
            if service.name in self._wanted:
                service.desired = self._wanted[service.name]
        if names == list(self.services):
            for service in services:
                for (_, key), value in zip(COLUMNS, cells(service), strict=True):
                    self.update_cell(service.name, key, value, update_width=True)  # "starting" is wider
        else:
            selected = self.selected_service
            self.clear()
            for service in services:
                self.add_row(*cells(service), key=service.name)
            if selected in names:
                self.move_cursor(row=names.index(selected), animate=False)
        self.services = {s.name: s for s in services}
        self.border_subtitle = f"{sum(s.running for s in services)} processes"

    @property
    def selected_service(self) -> str | None:
        if not self.services or self.row_count == 0:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except Exception:  # no row under the cursor
            return None
        return key.value

    # -- live --------------------------------------------------------------------
    def start_polling(self, every: float = 1.0) -> None:
        self.poll()
        self.set_interval(every, self.poll, name="poll services")

    @work(group="services", exit_on_error=False)
    async def poll(self) -> None:
        """Read the services once; a poll still running makes this one a no-op.

        (Not `exclusive`: a slow runtime would have each poll cancel the last
        and never finish one.)
        """
        stack = stack_of(self)
        if stack is None or self._polling:  # polls go on during a switch: it is worth watching
            return
        self._polling = True
        try:
            services = await stack.services()
        except Exception as error:  # a poll must never take the app down
            if not self.quiet and not stack.switching and not stack.stopping:
                self._errors.failed(self, "Services", error)
            self.post_message(self.Updated([], error=str(error)[:60]))
            return
        finally:
            self._polling = False
        self._errors.ok(self, "Services")
        self.update_services(services)
        self.post_message(self.Updated(services))

    # -- actions on the selected row --------------------------------------------
    def _target(self) -> ServiceStatus | None:
        name = self.selected_service
        if name is None:
            self.app.notify("Select a service first", severity="warning", timeout=3)
            return None
        return self.services[name]

    def action_logs(self) -> None:
        if (service := self._target()) is not None:
            self.post_message(self.ShowLogs(service.name))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_logs()

    def action_scale(self, delta: int) -> None:
        service = self._target()
        if service is None:
            return
        if service.kind != "worker":
            self.app.notify(f"{service.name} is a {service.kind}; only workers scale", severity="warning", timeout=4)
            return
        replicas = max(0, min(MAX_REPLICAS, self._wanted.get(service.name, service.desired) + delta))
        if replicas != service.desired:
            self._wanted[service.name] = service.desired = replicas  # shown now; the polls show the truth
            self.update_services(list(self.services.values()))
            self._run("scale", service.name, replicas)

    def action_restart(self) -> None:
        if (service := self._target()) is not None:
            self._run("restart", service.name)

    def action_kill(self) -> None:
        service = self._target()
        if service is None:
            return
        running = [r for r in service.replicas if r.state == "running"]
        if not running:
            self.app.notify(f"{service.name} has no running replica to kill", severity="warning", timeout=4)
            return
        self._run("kill", service.name, running[-1].index)

    @work(group="service actions", exit_on_error=False)
    async def _run(self, action: str, service: str, number: int = 0) -> None:
        stack = stack_of(self)
        if stack is None:
            self.app.notify("No stack attached (showing fixed data)", severity="warning", timeout=3)
            return
        try:
            if action == "scale":
                async with self._scaling:  # presses queue up here; each applies the latest ask
                    if service not in self._wanted:
                        return  # an earlier press already applied the latest number
                    number = self._wanted[service]
                    try:
                        await stack.scale(service, number)
                    finally:
                        if self._wanted.get(service) == number:
                            del self._wanted[service]
                done = f"{service} scaled to {number}"
            elif action == "restart":
                await stack.restart(service)
                done = f"{service} restarted"
            else:
                await stack.kill_replica(service, number)
                done = f"killed {service}-{number} with SIGKILL; its unacknowledged tasks will be redelivered"
        except Exception as error:
            report(self, f"{action.capitalize()} {service}", error)
        else:
            self.app.notify(done, timeout=4)
        self.poll()
