"""How the stack's own programs (the api, a worker) end: 0 when they stop cleanly, 2 with one
line for bad configuration, 1 with one line when their broker fails them. Anything else is a
bug and keeps its traceback (the supervisor restarts the program)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def run_program(prepare: Callable[[], T], run: Callable[[T], object],
                bad_input: tuple[type[Exception], ...], failed: tuple[type[Exception], ...]) -> int:
    try:
        prepared = prepare()
    except bad_input as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        run(prepared)
    except failed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
