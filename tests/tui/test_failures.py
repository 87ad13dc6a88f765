"""When the runtime fails, the app says so and keeps running: no traceback, keys still work."""

from __future__ import annotations

from collections.abc import AsyncIterator

from textual.widgets import TextArea

from sandbox.config import Settings
from sandbox.runtime.base import LogLine, Progress, Runtime, RuntimeFailure, ServiceStatus, no_progress
from sandbox.tui.app import SandboxApp
from sandbox.tui.header_bar import HeaderBar
from sandbox.tui.quit_dialog import QuitDialog
from sandbox.tui.send_panel import SendPanel
from sandbox.tui.task_history import TaskHistory

TAKEN = "port 6379 is taken by another program (pid 4242): stop it or set REDIS_URL"


class PortTaken(Runtime):
    """A runtime that cannot start anything, the way a busy laptop refuses."""

    name = "local"

    async def up(self, backend: str, progress: Progress = no_progress) -> None:
        progress("starting redis")
        raise RuntimeFailure(TAKEN)

    async def down(self, progress: Progress = no_progress) -> None:
        return None

    async def current_backend(self) -> str | None:
        return None

    def bus_settings(self, backend: str) -> Settings:
        return self.settings.with_backend(backend)

    async def services(self) -> list[ServiceStatus]:
        raise RuntimeFailure("supervisord is not running")

    async def scale(self, service: str, replicas: int) -> None:
        raise RuntimeFailure("not running")

    async def restart(self, service: str) -> None:
        raise RuntimeFailure("not running")

    async def kill_replica(self, service: str, replica: int) -> None:
        raise RuntimeFailure("not running")

    async def _no_lines(self) -> AsyncIterator[LogLine]:
        raise RuntimeFailure("no log files yet")
        yield  # pragma: no cover

    def logs(self, service: str, *, tail: int = 100, follow: bool = False) -> AsyncIterator[LogLine]:
        return self._no_lines()

    async def start_broker(self, backend: str, progress: Progress = no_progress) -> None:
        raise RuntimeFailure(TAKEN)

    async def stop_broker(self, backend: str, progress: Progress = no_progress) -> None:
        return None

    async def stop_apps(self, progress: Progress = no_progress) -> None:
        return None

    async def start_apps(self, backend: str, progress: Progress = no_progress) -> None:
        raise RuntimeFailure(TAKEN)


def messages(app: SandboxApp) -> list[str]:
    return [n.message for n in app._notifications]


async def test_a_failed_launch_is_reported_and_the_app_lives_on():
    app = SandboxApp(PortTaken(Settings()), Settings(), backend="redis")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        assert any(TAKEN in m for m in messages(app)), messages(app)
        assert app.stack.bus is None

        await pilot.press("b")  # no stack: a warning, not a crash
        assert any("not up yet" in m for m in messages(app))

        send = app.main.query_one(SendPanel)
        send.query_one("#send-inputs", TextArea).focus()
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        (task,) = send.query_one(TaskHistory).tasks.values()
        assert task.state == "error" and "cannot reach the broker" in task.error

        await pilot.press("2")
        app.main.query_one("#services").focus()
        await pilot.press("plus", "r", "k", "l")  # the panel is empty: keys must not fail
        assert any("Select a service first" in m for m in messages(app))

        header = app.main.query_one(HeaderBar)
        assert "REDIS" in str(header.query_one("#backend").render())

        await pilot.press("ctrl+q")
        assert isinstance(app.screen, QuitDialog)
        await pilot.press("d")  # take down: nothing runs, so it just exits
        await pilot.pause(0.3)
    assert app.return_code == 0
