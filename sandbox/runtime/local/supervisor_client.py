"""Start supervisord as a daemon and talk to it over its unix-socket XML-RPC API.

XML-RPC calls block, so each runs in a thread (`asyncio.to_thread`) with its
own ServerProxy (a proxy keeps one connection and is not thread-safe).
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
import xmlrpc.client
from pathlib import Path
from typing import Any

from supervisor.xmlrpc import Faults, SupervisorTransport

from sandbox.runtime.base import RuntimeFailure
from sandbox.runtime.local.procscan import alive_of

# supervisord's process states (supervisor.states.ProcessStates) in which nothing runs
DOWN_STATES = {"STOPPED", "EXITED", "FATAL", "UNKNOWN"}


class SupervisorError(RuntimeFailure):
    pass


class Supervisor:
    def __init__(self, socket_path: Path):
        self.socket_path = socket_path

    def _proxy(self) -> Any:
        transport = SupervisorTransport(None, None, f"unix://{self.socket_path}")
        # the host part is ignored by the unix transport
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport, allow_none=True)

    def call_sync(self, method: str, *args: Any) -> Any:
        proxy = self._proxy()
        try:
            return getattr(proxy.supervisor, method)(*args)
        finally:
            proxy("close")()

    async def call(self, method: str, *args: Any) -> Any:
        return await asyncio.to_thread(self.call_sync, method, *args)

    async def call_ignoring(self, method: str, *args: Any, ignore: tuple[int, ...]) -> Any:
        """A call whose listed faults mean 'already so' (already stopped, not there…)."""
        try:
            return await self.call(method, *args)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode in ignore:
                return None
            raise

    def alive_sync(self) -> bool:
        if not self.socket_path.exists():
            return False
        try:
            return self.call_sync("getState").get("statename") == "RUNNING"
        except (OSError, xmlrpc.client.Error):
            return False

    async def alive(self) -> bool:
        return await asyncio.to_thread(self.alive_sync)

    async def processes(self) -> dict[str, dict[str, Any]]:
        """getAllProcessInfo by process name (every program here has one process)."""
        return {info["name"]: info for info in await self.call("getAllProcessInfo")}

    async def pid(self) -> int:
        return int(await self.call("getPID"))

    # -- programs ---------------------------------------------------------------
    async def apply(self, names: set[str]) -> None:
        """Make supervisord's groups for `names` match their conf.d files.

        Programs whose file changed are stopped, removed and added again; new
        files are added (and autostart), deleted files are stopped and removed.
        Groups not named are left alone even if their files changed.
        """
        added, changed, removed = (await self.call("reloadConfig"))[0]
        going = [n for n in (*changed, *removed) if n in names]
        await self.stop(going)  # in parallel: each may take its stopwaitsecs
        for name in going:
            await self.call_ignoring("removeProcessGroup", name, ignore=(Faults.BAD_NAME,))
        for name in [n for n in (*added, *changed) if n in names]:
            await self.call_ignoring("addProcessGroup", name, ignore=(Faults.ALREADY_ADDED,))

    async def start(self, names: list[str]) -> None:
        for name in names:
            await self.call_ignoring("startProcess", name, False, ignore=(Faults.ALREADY_STARTED, Faults.BAD_NAME))

    async def stop(self, names: list[str], timeout: float = 120.0) -> None:
        """Stop processes in parallel (TERM, then KILL after stopwaitsecs) and wait."""
        for name in names:
            await self.call_ignoring("stopProcess", name, False, ignore=(Faults.NOT_RUNNING, Faults.BAD_NAME))
        await self.wait_states(names, DOWN_STATES, timeout)

    async def wait_states(self, names: list[str], states: set[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            procs = await self.processes()
            waiting = [n for n in names if n in procs and procs[n]["statename"] not in states]
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise SupervisorError(f"timed out waiting for {', '.join(waiting)} to stop")
            await asyncio.sleep(0.1)

    async def signal(self, name: str, sig: str) -> None:
        await self.call("signalProcess", name, sig)

    async def shutdown(self) -> None:
        try:
            await self.call("shutdown")
        except (OSError, xmlrpc.client.Error):
            pass  # already going away


def launch_supervisord(conf: Path, directory: Path, env: dict[str, str] | None = None, timeout: float = 15.0) -> None:
    """Run supervisord, which daemonizes itself; return when its socket answers.

    Errors before it daemonizes (bad config, socket in use) come on stderr.
    """
    err_path = conf.with_name("supervisord.stderr")
    with open(err_path, "w+b") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)],
            cwd=directory,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise SupervisorError(f"supervisord did not daemonize within {timeout:g}s; see {err_path}") from None
        err.seek(0)
        message = err.read().decode(errors="replace").strip()
    if rc != 0:
        last = message.splitlines()[-1] if message else f"exit status {rc}"
        raise SupervisorError(f"supervisord failed to start: {last} (config {conf})")


def read_pid(pidfile: Path) -> int | None:
    """supervisord's pid from its pid file, if that process still lives."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if alive_of([pid]) else None


_EVENT = re.compile(r"(?:(exited|stopped): (\S+) \(|supervisord started with pid)")


def restart_counts(logfile: Path) -> dict[str, int]:
    """Unrequested exits per program, from supervisord's own log.

    supervisord does not count restarts; its log says every `exited:` (not asked
    for, so autorestart brings it back) and `stopped:` (asked for, e.g. a
    restart or a scale) — a stop resets the count, as a manual restart does in
    Docker.
    """
    counts: dict[str, int] = {}
    try:
        text = logfile.read_text(errors="replace")
    except OSError:
        return counts
    for match in _EVENT.finditer(text):
        kind, name = match.group(1), match.group(2)
        if kind is None:  # a new supervisord: earlier lines are another life
            counts.clear()
        elif kind == "exited":
            counts[name] = counts.get(name, 0) + 1
        else:
            counts[name] = 0
    return counts
