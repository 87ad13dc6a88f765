"""Shared pieces for the TUI tests: apps fed with fixed data, a fixed clock zone for pictures."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Times in the views are local; pin the zone so snapshots match on every machine."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def offline_app():
    """A SandboxApp with no runtime: widgets show only what they are fed."""
    from sandbox.config import Settings
    from sandbox.tui.app import SandboxApp

    return SandboxApp(None, Settings(queue_backend="kafka"))
