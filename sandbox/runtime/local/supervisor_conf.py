"""supervisord.conf and one `conf.d/<program>.conf` per program.

One file per program lets a scale or a restart rewrite just that program and
apply it with `reloadConfig` + `addProcessGroup`/`removeProcessGroup`, leaving
every other program alone.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.runtime.base import RuntimeFailure
from sandbox.runtime.local.statedir import StateDir

# supervisord's own priorities: brokers start first and stop last; workers stop
# first, while the broker still takes their acknowledgements.
PRIORITY_BROKER = 100
PRIORITY_API = 500
PRIORITY_WORKER = 900


@dataclass
class Program:
    name: str  # also the process name and the log file's name
    argv: Sequence[str]
    environment: Mapping[str, str] = field(default_factory=dict)
    directory: Path | None = None
    priority: int = PRIORITY_WORKER
    stopwaitsecs: int = 30
    startsecs: int = 1
    startretries: int = 3
    autostart: bool = True


def _escape(value: str) -> str:
    # supervisord expands %(name)s in commands and environment values
    return value.replace("%", "%%")


def _env_value(key: str, value: str) -> str:
    # supervisor splits `environment` with a non-POSIX shlex: a quoted token keeps
    # commas and spaces, there are no escapes, and quotes at either end are stripped
    quote = "'" if '"' in value else '"'
    if quote in value or (value and (value[0] in "'\"" or value[-1] in "'\"")):
        raise RuntimeFailure(f"{key}={value!r}: supervisord cannot pass this value (quotes); change it")
    return quote + _escape(value) + quote


def render_program(program: Program, logfile: Path) -> str:
    env = ",".join(f"{key}={_env_value(key, str(value))}" for key, value in program.environment.items())
    lines = [
        f"[program:{program.name}]",
        f"command={_escape(shlex.join(program.argv))}",
        f"priority={program.priority}",
        f"autostart={'true' if program.autostart else 'false'}",
        "autorestart=true",  # crashed or killed replicas come back
        f"startsecs={program.startsecs}",
        f"startretries={program.startretries}",
        "stopsignal=TERM",
        f"stopwaitsecs={program.stopwaitsecs}",  # time for in-flight tasks
        "stopasgroup=true",
        "killasgroup=true",
        "redirect_stderr=true",
        f"stdout_logfile={_escape(str(logfile))}",
        "stdout_logfile_maxbytes=10MB",
        "stdout_logfile_backups=2",
    ]
    if program.directory:
        lines.append(f"directory={_escape(str(program.directory))}")
    if env:
        lines.append(f"environment={env}")
    return "\n".join(lines) + "\n"


def render_supervisord(state: StateDir, directory: Path) -> str:
    return "\n".join([
        "; written by laddr-sandbox (local runtime); rewritten on every up",
        "[unix_http_server]",
        f"file={_escape(str(state.socket))}",
        "chmod=0700",
        "",
        "[supervisord]",
        f"logfile={_escape(str(state.supervisord_log))}",
        "logfile_maxbytes=5MB",
        "logfile_backups=1",
        f"pidfile={_escape(str(state.pidfile))}",
        f"childlogdir={_escape(str(state.logs))}",
        f"directory={_escape(str(directory))}",
        "nodaemon=false",
        "identifier=laddr-sandbox",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[include]",
        "files = conf.d/*.conf",  # relative to this file: safe with spaces in the path
        "",
    ])


def write_supervisord(state: StateDir, directory: Path) -> None:
    state.create()
    state.conf.write_text(render_supervisord(state, directory))


def program_file(state: StateDir, name: str) -> Path:
    return state.programs / f"{name}.conf"


def write_program(state: StateDir, program: Program) -> bool:
    """Write a program's file; True when its content changed."""
    path = program_file(state, program.name)
    text = render_program(program, state.log_file(program.name))
    if path.exists() and path.read_text() == text:
        return False
    path.write_text(text)
    return True


def remove_program(state: StateDir, name: str) -> None:
    program_file(state, name).unlink(missing_ok=True)


def configured_programs(state: StateDir) -> list[str]:
    return sorted(p.stem for p in state.programs.glob("*.conf"))
