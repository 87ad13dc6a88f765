"""Small text helpers shared by the views: times, ids, payloads, state colours."""

from __future__ import annotations

import json
import time
from typing import Any

from rich.text import Text

STATE_STYLES = {
    "success": "green",
    "running": "green",
    "healthy": "green",
    "error": "red",
    "unhealthy": "red",
    "fatal": "red",
    "timeout": "magenta",
    "pending": "yellow",
    "starting": "yellow",
    "partial": "yellow",
    "restarting": "yellow",
    "stopped": "dim",
    "exited": "dim",
    "unknown": "dim",
    "task": "cyan",
    "response": "green",
    "dlq": "red",
    "registry": "dim",
}


def styled(word: str | None) -> Text:
    word = word or ""
    return Text(word, style=STATE_STYLES.get(word, ""))


def clock(ts: float | None) -> str:
    """HH:MM:SS.mmm in local time (what people compare with their own logs)."""
    if ts is None:
        return "--:--:--.---"
    if ts > 1e12:  # milliseconds (Kafka timestamps)
        ts /= 1000.0
    return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"


def short_id(task_id: str | None, size: int = 8) -> str:
    return (task_id or "")[:size]


def one_line(value: Any, limit: int = 160) -> str:
    """A payload squeezed onto one line, for table cells."""
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value[: limit * 4]).decode("utf-8", "replace")
    elif not isinstance(value, str):
        try:
            value = json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))
        except (TypeError, ValueError):
            value = repr(value)
    value = " ".join(value.split())
    return value if len(value) <= limit else value[: limit - 1] + "…"


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "-"
    if ms >= 10_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms:.0f} ms"


def fmt_seconds(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
