"""A venv with `laddr==X` from PyPI, made once and cached per user.

    from sandbox.project.laddr_env import laddr_venv
    env = laddr_venv("0.9.6")          # ~/.cache/laddr-sandbox/laddr-0.9.6-venv
    subprocess.run([env.laddr, "init", "demo", "--path", "/tmp"])

Built by python_env.cached_venv (in place, under a file lock, never left half-made).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from sandbox.brokers.kafka_jars import cache_root

from .errors import ProjectError
from .python_env import EnvironmentFailure, cached_venv

DEFAULT_VERSION = "0.9.6"


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
    env = LaddrEnv(venv_dir(version, extras, cache_dir), requirement)
    try:
        cached_venv(env.root, [requirement], requirement, python=python)
    except EnvironmentFailure as exc:
        raise LaddrEnvError(str(exc)) from None
    if not env.laddr.is_file():
        raise LaddrEnvError(f"{requirement} installed into {env.root} but has no `laddr` command")
    return env


if __name__ == "__main__":
    print(laddr_venv(*sys.argv[1:2]).root)
