"""Messages, dead letters and traces as JSON documents: what `watch --json`, `dlq --json` and
`trace --json` print and what the TUI's export (`x`) writes, one meaning of each field everywhere."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from sandbox.bus.base import DeadLetter, TapMessage
from sandbox.protocol import agent_of_channel


def message_doc(m: TapMessage) -> dict[str, Any]:
    """One broker message (`watch --json`)."""
    return {
        "timestamp": m.timestamp, "channel": m.channel, "kind": m.kind, "position": m.position,
        "task_id": m.task_id, "agent": m.agent, "status": m.status,
        "message": m.doc if m.doc is not None else m.raw.decode(errors="replace"),
    }


def letter_doc(d: DeadLetter) -> dict[str, Any]:
    """One dead letter (`dlq --json`)."""
    try:
        payload: Any = orjson.loads(d.raw)
    except orjson.JSONDecodeError:
        payload = d.raw.decode(errors="replace")
    return {"id": d.id, "time": d.timestamp, "agent": agent_of_channel(d.source), "reason": d.reason,
            "delivery_count": d.delivery_count, "source": d.source, "payload": payload}


def dumps(doc: Any) -> str:
    # default=str: a payload is whatever a client sent; an odd value must not stop an export
    return orjson.dumps(doc, default=str).decode()


def write_jsonl(path: Path, docs: Iterable[Any]) -> int:
    """Write one JSON document per line (parent folders made); returns how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for doc in docs:
            out.write(dumps(doc) + "\n")
            count += 1
    return count
