"""Find and end the processes of one sandbox by an environment marker.

supervisord and every program it runs carry `LADDR_SANDBOX_STATE=<state dir>`
in their environment, so processes left behind by a crashed or killed
supervisord can still be found (from /proc, no psutil) and ended.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

MARKER = "LADDR_SANDBOX_STATE"


def marked_pids(state_root: Path) -> list[int]:
    """Pids of live processes started for this state folder (Linux; [] elsewhere)."""
    needle = f"{MARKER}={state_root}".encode() + b"\0"
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    found = []
    me = os.getpid()
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = (entry / "environ").read_bytes() + b"\0"
        except OSError:
            continue  # gone, or not ours to read
        if needle in environ and _alive(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def alive_of(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        except PermissionError:
            pass
        if not Path("/proc").is_dir() or _alive(pid):
            out.append(pid)
    return out


def _signal(pid: int, sig: int) -> None:
    try:
        # supervisor's children lead their own process group: end what they spawned too
        if os.getpgid(pid) == pid and pid != os.getpgrp():
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def terminate(pids: list[int], grace: float = 10.0) -> list[int]:
    """TERM each process (and its group), KILL what is left after `grace`; return survivors."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for pid in alive_of(pids):
            _signal(pid, sig)
        deadline = time.monotonic() + wait
        while alive_of(pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not alive_of(pids):
            return []
    return alive_of(pids)
