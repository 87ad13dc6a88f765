"""The Python a Laddr project's workers run in: its own `.venv`, else one made from its
`requirements.txt` and cached per user (keyed by the requirements' text, so an edit
makes a new one and two projects with the same requirements share one)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from sandbox.brokers.kafka_jars import cache_root

PIP_TIMEOUT_S = 1800  # laddr's own requirements pull in several LLM clients
READY_MARK = ".laddr-sandbox-ready"


class EnvironmentFailure(RuntimeError):
    """The project's Python cannot be had; the message is one line that says why."""


def own_venv_python(root: Path) -> Path | None:
    for name in (".venv", "venv"):
        python = root / name / "bin" / "python"
        if python.exists():
            return python
    return None


def venv_key(requirements: str) -> str:
    lines = sorted(line.strip() for line in requirements.splitlines() if line.strip() and not line.lstrip().startswith("#"))
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]
    return f"py{sys.version_info.major}{sys.version_info.minor}-{digest}"


def cached_venv(requirements: str, progress: Callable[[str], None] = lambda _m: None, base: Path | None = None) -> Path:
    """The python of a venv holding `requirements` (pip's requirements-file text), made once."""
    home = (base or cache_root() / "project-venvs") / venv_key(requirements)
    python = home / "bin" / "python"
    if (home / READY_MARK).exists() and python.exists():
        return python
    if home.exists():  # a half-made one from an interrupted run
        shutil.rmtree(home)
    home.parent.mkdir(parents=True, exist_ok=True)
    building = home.with_name(home.name + f".building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    progress(f"making the project's Python environment (once, cached in {home})")
    _run([sys.executable, "-m", "venv", str(building)], "python -m venv")
    req = building / "requirements.txt"
    req.write_text(requirements, encoding="utf-8")
    progress("installing the project's requirements.txt with pip (first time only)")
    _run([str(building / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(req)],
         "pip install -r requirements.txt")
    (building / READY_MARK).write_text(requirements, encoding="utf-8")
    try:
        building.rename(home)
    except OSError:  # another process made it meanwhile
        shutil.rmtree(building, ignore_errors=True)
    # A venv's scripts name its folder; the interpreter itself works from the new place.
    return python


def project_python(root: Path, requirements: Path | None, progress: Callable[[str], None] = lambda _m: None) -> Path:
    """The project's `.venv`, else a cached venv from its requirements.txt."""
    own = own_venv_python(root)
    if own is not None:
        return own
    if requirements is None or not requirements.exists():
        raise EnvironmentFailure(f"{root} has no .venv and no requirements.txt: make one of them so its workers can run")
    return cached_venv(requirements.read_text(encoding="utf-8"), progress)


def _run(argv: list[str], what: str) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise EnvironmentFailure(f"{what} took over {PIP_TIMEOUT_S} s and was stopped") from None
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        raise EnvironmentFailure(f"{what} failed: {lines[-1].strip() if lines else f'exit {done.returncode}'}")
