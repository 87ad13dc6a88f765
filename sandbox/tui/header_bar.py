"""The top line: which broker, which runtime, how healthy, where the broker is, what is happening."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label

from sandbox.runtime.base import ServiceStatus

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


class HeaderBar(Horizontal):
    """Backend badge, runtime, stack health, broker address and a progress line."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._frame = 0
        self._progress: str | None = None

    def compose(self) -> ComposeResult:
        yield Label("laddr-sandbox", id="title")
        yield Label("…", id="backend")
        yield Label("", id="runtime")
        yield Label("", id="health")
        yield Label("", id="broker")
        yield Label("", id="progress")

    def on_mount(self) -> None:
        self._spin = self.set_interval(0.1, self._tick, pause=True)

    def set_backend(self, backend: str | None) -> None:
        badge = self.query_one("#backend", Label)
        badge.update(f" {(backend or '?').upper()} ")
        badge.set_class(backend == "redis", "-redis")
        badge.set_class(backend == "kafka", "-kafka")

    def set_runtime(self, name: str) -> None:
        self.query_one("#runtime", Label).update(f"runtime: {name}")

    def set_broker(self, address: str) -> None:
        self.query_one("#broker", Label).update(address)

    def set_health(self, services: list[ServiceStatus] | None, error: str | None = None, busy: str | None = None) -> None:
        """Summarise the services; `busy` ("starting", "switching") explains a planned outage."""
        label = self.query_one("#health", Label)
        services = services or []
        healthy = sum(1 for s in services if s.health == "healthy" and s.state == "running")
        total = len(services)
        if busy:
            label.update(Text(f"◐ {busy} {healthy}/{total}" if total else f"◐ {busy}", style="yellow"))
        elif error:
            label.update(Text(f"● {error}", style="red"))
        elif not services:
            label.update(Text("○ no services", style="dim"))
        elif healthy == total:
            label.update(Text(f"● healthy {healthy}/{total}", style="green"))
        elif any(s.health == "unhealthy" or s.state == "stopped" for s in services):
            label.update(Text(f"● degraded {healthy}/{total}", style="red"))
        else:
            label.update(Text(f"◐ starting {healthy}/{total}", style="yellow"))

    def set_progress(self, line: str | None) -> None:
        """Show what a long action is doing, with a spinner; None hides it."""
        self._progress = line
        if line is None:
            self._spin.pause()
            self.query_one("#progress", Label).update("")
        else:
            self._spin.resume()
            self._tick()

    def _tick(self) -> None:
        if self._progress is None:
            return
        self._frame = (self._frame + 1) % len(SPINNER)
        self.query_one("#progress", Label).update(f"{SPINNER[self._frame]} {self._progress}")
