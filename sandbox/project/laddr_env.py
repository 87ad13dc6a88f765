"""A venv with `laddr==X` from PyPI, made once and cached per user.

    from sandbox.project.laddr_env import laddr_venv
    env = laddr_venv("0.9.6")          # ~/.cache/laddr-sandbox/laddr-0.9.6-venv
    subprocess.run([env.laddr, "init", "demo", "--path", "/tmp"])

The venv is built in place under a file lock (venvs cannot be moved: their scripts
name their own path) and marked complete only when pip succeeded, so a half-made
one is rebuilt and two processes asking at once build it once.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from sandbox.brokers.kafka_jars import cache_root

from .errors import ProjectError

DEFAULT_VERSION = "0.9.6"
MARKER = ".laddr-sandbox-complete"
PIP_TIMEOUT_S = 900


class LaddrEnvError(ProjectError):
    """The venv could not be made; the message ends with pip's (or venv's) last line."""


@dataclass(frozen=True)
class LaddrEnv:
    root: Path
    requirement: str

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def laddr(self) -> Path:
        """The `laddr` console script (laddr init, laddr add agent, ...)."""
        return self.root / "bin" / "laddr"

    def bin(self, name: str) -> Path:
        return self.root / "bin" / name


def venv_dir(version: str = DEFAULT_VERSION, extras: tuple[str, ...] = (), cache_dir: Path | None = None) -> Path:
    tag = "-".join(("laddr", version, *sorted(extras), "venv"))
    return Path(cache_dir) if cache_dir else cache_root() / tag


def laddr_venv(version: str = DEFAULT_VERSION, extras: tuple[str, ...] = (), *,
               cache_dir: Path | None = None, python: str | None = None) -> LaddrEnv:
    """The cached venv with `laddr[extras]==version`, made now if it is not there yet."""
    extra = f"[{','.join(sorted(extras))}]" if extras else ""
    requirement = f"laddr{extra}=={version}"
    root = venv_dir(version, extras, cache_dir)
    env = LaddrEnv(root, requirement)
    if (root / MARKER).is_file():
        return env
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / MARKER).is_file():  # another process made it while we waited
            return env
        shutil.rmtree(root, ignore_errors=True)
        try:
            _run([python or sys.executable, "-m", "venv", str(root)], f"could not make a venv at {root}")
            _run([str(env.python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", requirement],
                 f"could not install {requirement} into {root}")
            if not env.laddr.is_file():
                raise LaddrEnvError(f"{requirement} installed into {root} but has no `laddr` command")
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)  # never leave half a venv behind
            raise
        (root / MARKER).write_text(requirement + "\n")
    return env


def _run(cmd: list[str], what: str) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S,
                              env={**os.environ, "PIP_NO_INPUT": "1"})
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LaddrEnvError(f"{what}: {exc}") from None
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
        raise LaddrEnvError(f"{what}: {lines[-1].strip() if lines else f'exit {proc.returncode}'}")


if __name__ == "__main__":
    print(laddr_venv(*sys.argv[1:2]).root)
