"""`x` in Messages, a trace and Dead letters: what the view holds, saved as JSONL to attach to a bug report.

The records are the CLI's (`watch --json`, `trace --json`, `dlq --json`: sandbox/export.py); the file goes to
the sandbox's state folder, exports/<kind>-<time>.jsonl, and the app says where.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from textual.dom import DOMNode

from sandbox.export import write_jsonl

EXPORTS = "exports"


def export_path(kind: str, now: float | None = None) -> Path:
    """<state folder>/exports/<kind>-YYYYmmdd-HHMMSS-mmm.jsonl (the working folder's when there is no state yet)."""
    from sandbox.runtime import state_file

    now = time.time() if now is None else now
    name = f"{EXPORTS}/{kind}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}-{int(now * 1000) % 1000:03d}.jsonl"
    return state_file(name) or Path.cwd() / ".laddr-sandbox" / name


def export(node: DOMNode, kind: str, docs: Iterable[Any], what: str) -> Path | None:
    """Write `docs` and notify the path (or, on a full disk or a read-only folder, why not)."""
    path = export_path(kind)
    try:
        count = write_jsonl(path, docs)
    except OSError as error:  # the app goes on; the line says what to fix
        node.app.notify(f"Could not save {what}: {error.strerror or error} ({path})", severity="error", timeout=8)
        return None
    node.app.notify(f"Saved {count} {what} to {path}", timeout=10)
    return path
