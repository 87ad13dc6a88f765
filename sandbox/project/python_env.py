"""The Python a Laddr project's workers run in: its own `.venv`, else one made from its
`requirements.txt` and cached per user (keyed by the requirements' text, so an edit
makes a new one and two projects with the same requirements share one).

Venvs are built in place under a file lock (a venv cannot be moved: its scripts name
their own path) and marked complete only when pip succeeded, so a half-made one is
rebuilt and two processes asking at once build it once.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from sandbox.brokers.kafka_jars import cache_root

from .layout import LaddrProject

PIP_TIMEOUT_S = 1800  # laddr init's requirements pull in several LLM clients
MARKER = ".laddr-sandbox-complete"


class EnvironmentFailure(RuntimeError):
    """The project's Python cannot be had; one line that ends with pip's (or venv's) last line."""


def cached_venv(root: Path, pip_args: list[str], what: str, *, python: str | None = None) -> Path:
    """The python of the venv at `root` with `pip install <pip_args>` done, made once."""
    interpreter = root / "bin" / "python"
    if (root / MARKER).is_file():
        return interpreter
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / MARKER).is_file():  # another process made it while we waited
            return interpreter
        shutil.rmtree(root, ignore_errors=True)
        try:
            _run([python or sys.executable, "-m", "venv", str(root)], f"could not make a venv at {root}")
            _run([str(interpreter), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pip_args],
                 f"could not install {what}")
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)  # never leave half a venv behind
            raise
        (root / MARKER).write_text(what + "\n")
    return interpreter


def requirements_key(text: str) -> str:
    lines = sorted(line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]
    return f"py{sys.version_info.major}{sys.version_info.minor}-{digest}"


def project_python(project: LaddrProject) -> Path:
    """The project's `.venv`, else a cached venv made from its requirements.txt."""
    if project.venv is not None:
        return project.venv / "bin" / "python"
    requirements = project.requirements_file
    if not requirements.is_file():
        raise EnvironmentFailure(f"{project.root} has no .venv and no requirements.txt: "
                                 "make one of them so its workers can run")
    key = requirements_key(requirements.read_text(encoding="utf-8", errors="replace"))
    return cached_venv(cache_root() / "project-venvs" / key, ["-r", str(requirements)],
                       f"{requirements} (pip install -r)")


def project_python_ready(project: LaddrProject) -> bool:
    """Whether project_python() would answer at once (no pip run)."""
    if project.venv is not None or not project.requirements_file.is_file():
        return True
    key = requirements_key(project.requirements_file.read_text(encoding="utf-8", errors="replace"))
    return (cache_root() / "project-venvs" / key / MARKER).is_file()


def _run(cmd: list[str], what: str) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S,
                              env={**os.environ, "PIP_NO_INPUT": "1"})
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvironmentFailure(f"{what}: {exc}") from None
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
        raise EnvironmentFailure(f"{what}: {lines[-1].strip() if lines else f'exit {proc.returncode}'}")
