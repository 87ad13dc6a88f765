"""Runtimes: the same stack run by Docker Compose, by local processes, or by nobody.

    runtime = choose_runtime(kind, settings)   # THE one place that picks a runtime

With no kind asked for: the stack running for this folder, else `default` (the CLI's
auto, launch's local). auto picks Compose only where it can actually run.

The CLI and the TUI call choose_runtime and then only the Runtime interface
(base.py); local/, compose/ and external.py are imported lazily from here.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from sandbox.config import Settings
from sandbox.runtime.base import Progress, Runtime, RuntimeFailure, no_progress
from sandbox.runtime.compose.available import compose_problem, docker_answers
from sandbox.runtime.compose.config import compose_file

__all__ = ["KINDS", "choose_runtime", "compose_file", "detect_running", "docker_answers", "make_runtime", "state_file"]

KINDS = ("auto", "local", "compose", "external")
T = TypeVar("T")


def choose_runtime(kind: str | None, settings: Settings, *, default: str = "auto", backend: str | None = None,
                   say: Progress = no_progress) -> Runtime:
    """The runtime asked for; with none, the one running for this folder, else `default`.

    auto: the one running for this folder, else Compose where it can actually run a stack
    on `backend` (engine, files, .env, images), else local, saying why in one line.
    """
    kind = (kind or "").strip().lower() or None
    if kind in (None, "auto"):
        running = detect_running(settings)
        if running is not None:
            return running
    return make_runtime(kind or default, settings, backend=backend, say=say)


def make_runtime(kind: str, settings: Settings, *, backend: str | None = None, say: Progress = no_progress,
                 cwd: Path | None = None) -> Runtime:
    """`cwd`: the folder whose stack it is (default: this one), for a stack beside the user's."""
    kind = (kind or "auto").strip().lower()
    if kind not in KINDS:
        raise RuntimeFailure(f"unknown runtime {kind!r}; choose one of {', '.join(KINDS)}")
    if kind == "auto":
        return _auto(settings, backend or settings.queue_backend, say)
    if kind == "local":
        return _local(settings, cwd)
    if kind == "external":
        from sandbox.runtime.external import ExternalRuntime

        return ExternalRuntime(settings)
    compose = _compose_class()
    if compose is None:
        raise RuntimeFailure("the compose runtime is not available in this install: use --runtime local")
    return compose(settings)


def _auto(settings: Settings, backend: str, say: Progress) -> Runtime:
    if settings.project is not None:
        say("runtime auto: local, which runs a Laddr project's own workers (use --runtime compose for its compose file)")
        return _local(settings)
    compose = _compose_class()
    why = "this install has no compose runtime" if compose is None else compose_problem(backend)
    if compose is not None and why is None:
        return compose(settings)
    say(f"runtime auto: local, as Compose cannot run here ({why})")
    return _local(settings)


def detect_running(settings: Settings) -> Runtime | None:
    """The runtime with a stack up for this folder, so status/logs/down need no flag.

    Synchronous, for the CLI to call before it runs anything: local first (a
    state folder and a live supervisord are cheap to check), then Compose when
    Docker answers.
    """
    from sandbox.runtime.local import LocalRuntime

    local = LocalRuntime(settings)
    if local.running_sync():
        return local
    compose = _compose_class() if compose_file() and docker_answers() else None
    if compose is not None:
        runtime = compose(settings)
        if _run_in_thread(runtime.current_backend()) is not None:
            return runtime
    return None


def state_file(name: str, cwd: Path | None = None) -> Path | None:
    """A file in this folder's sandbox state folder, when there is one (the TUI keeps its last inputs there)."""
    from sandbox.runtime.local.statedir import STATE_ENV, state_dir

    folder = state_dir(cwd)
    if os.environ.get(STATE_ENV) or folder.is_dir():
        return folder / name
    return None


def _run_in_thread(coro: Coroutine[Any, Any, T]) -> T | None:
    """Run a coroutine to the end from sync code, even inside a running event loop."""
    result: list[T | None] = [None]

    def target() -> None:
        try:
            result[0] = asyncio.run(coro)
        except RuntimeFailure:
            result[0] = None

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join()
    return result[0]


def _local(settings: Settings, cwd: Path | None = None) -> Runtime:
    from sandbox.runtime.local import LocalRuntime

    return LocalRuntime(settings, cwd)


def _compose_class() -> type[Runtime] | None:
    # written separately and optional: a missing module means no compose runtime
    try:
        from sandbox.runtime.compose import ComposeRuntime
    except ImportError:
        return None
    return ComposeRuntime
