"""Turning failures into notifications instead of tracebacks."""

from __future__ import annotations

from textual.dom import DOMNode

from sandbox.bus import BusError
from sandbox.config import ConfigError
from sandbox.runtime.base import RuntimeFailure

# What a person can act on: shown as the message alone. Anything else is a bug,
# shown with its type so it can be reported, but it never kills the app.
EXPECTED = (BusError, RuntimeFailure, ConfigError, OSError, TimeoutError)


def describe(error: BaseException) -> str:
    if isinstance(error, EXPECTED):
        return str(error) or type(error).__name__
    return f"{type(error).__name__}: {error}"


def report(node: DOMNode, what: str, error: BaseException, *, timeout: float = 8) -> None:
    node.log.error(what, repr(error))
    node.app.notify(describe(error), title=what, severity="error", timeout=timeout)


class ErrorOnce:
    """Report a repeating failure (a poll every second) once, and its recovery once."""

    def __init__(self) -> None:
        self.last: str | None = None

    def failed(self, node: DOMNode, what: str, error: BaseException) -> None:
        text = describe(error)
        if text != self.last:
            self.last = text
            report(node, what, error)

    def ok(self, node: DOMNode, what: str) -> None:
        if self.last is not None:
            self.last = None
            node.app.notify(f"{what}: back to normal", timeout=3)
