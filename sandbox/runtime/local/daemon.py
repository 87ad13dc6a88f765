"""supervisord for one state folder: started fresh, and ended with everything it ran.

Both ends also look for processes by the folder's marker (procscan), so a
supervisord that died hard leaves nothing running behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

from sandbox.runtime.local.kafka_nodes import is_broker_program
from sandbox.runtime.base import Progress, RuntimeFailure
from sandbox.runtime.local.procscan import MARKER, alive_of, marked_pids, terminate
from sandbox.runtime.local.statedir import StateDir
from sandbox.runtime.local.supervisor_client import Supervisor, SupervisorError, launch_supervisord, read_pid
from sandbox.runtime.local.supervisor_conf import configured_programs, remove_program, write_supervisord

SUPERVISORD_ANSWERS_S = 15.0
EXIT_WAIT_S = 30.0


async def start_supervisord(folder: StateDir, sup: Supervisor, project_dir: Path, progress: Progress) -> None:
    """Start supervisord (with no programs yet) unless it runs."""
    if await sup.alive():
        return
    leftovers = marked_pids(folder.root)
    if leftovers:  # a supervisord that died hard leaves its programs behind
        progress(f"ending {len(leftovers)} process(es) left by an earlier run")
        await asyncio.to_thread(terminate, leftovers)
    try:
        folder.create()
        for name in configured_programs(folder):
            remove_program(folder, name)  # a cold start decides every program afresh
        write_supervisord(folder, project_dir)
        folder.socket.unlink(missing_ok=True)
    except OSError as exc:
        raise RuntimeFailure(
            f"cannot write the state folder {folder.root} ({exc.strerror or exc}): "
            "make it writable or set LADDR_STATE_DIR to another folder"
        ) from None
    progress("starting supervisord")
    # the marker lets `down` find every process of this folder even if supervisord dies
    env = {**os.environ, MARKER: str(folder.root)}
    await asyncio.to_thread(launch_supervisord, folder.conf, project_dir, env)
    deadline = time.monotonic() + SUPERVISORD_ANSWERS_S
    while not await sup.alive():
        if time.monotonic() > deadline:
            raise RuntimeFailure(f"supervisord did not answer on {folder.socket}: see {folder.supervisord_log}")
        await asyncio.sleep(0.05)


async def end_everything(folder: StateDir, sup: Supervisor, progress: Progress) -> None:
    """Stop the apps, then the brokers, then supervisord; end whatever is left of this folder."""
    pids: list[int] = []
    if await sup.alive():
        procs = await sup.processes()
        pids = [info["pid"] for info in procs.values() if info["pid"]]
        with contextlib.suppress(OSError, SupervisorError):
            pids.append(await sup.pid())
        # in parallel, apps first: supervisord's own shutdown goes one group at a time
        apps = [n for n in procs if not is_broker_program(n)]
        if apps:
            progress("stopping the workers and the api")
            await sup.stop(apps)
        brokers = [n for n in procs if is_broker_program(n)]
        if brokers:
            progress(f"stopping {', '.join(brokers)}")
            await sup.stop(brokers)
        progress("stopping supervisord")
        await sup.shutdown()
    elif pid := read_pid(folder.pidfile):
        pids.append(pid)
    pids += marked_pids(folder.root)
    deadline = time.monotonic() + EXIT_WAIT_S
    while alive_of(pids) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    survivors = await asyncio.to_thread(terminate, alive_of(pids), 5.0)
    if survivors:
        raise RuntimeFailure(f"processes {survivors} did not exit: end them with kill -9 {' '.join(map(str, survivors))}")
    if folder.state_file.exists():
        state = folder.load()
        state.started_at = None
        folder.save(state)
    progress("stack down")
