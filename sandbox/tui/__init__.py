"""The Textual app behind `laddr-sandbox launch`.

It talks only to the Runtime and Bus interfaces (through `stack.Stack`), so it
works the same on Compose, local processes or an external broker.
"""

from __future__ import annotations

__all__ = ["SandboxApp", "run_tui"]


def __getattr__(name: str):  # import Textual only when the TUI is used
    if name in __all__:
        from sandbox.tui import app

        return getattr(app, name)
    raise AttributeError(name)
