"""One tap line from the bytes seen on the broker: whatever decodes is shown, nothing is required."""

from __future__ import annotations

from typing import Any

import orjson

from sandbox.bus.base import TapMessage
from sandbox.protocol import agent_of_channel, asked


def describe_message(channel: str, kind: str, raw: bytes, timestamp: float, position: str,
                     task_id: str | None = None) -> TapMessage:
    """A tap line from raw bytes: whatever decodes is shown, nothing is required.

    `task_id`: where the place names the task (a Redis response channel). A response that
    names no task at all (Laddr 0.9.6 on Kafka) is shown as unmatched.
    """
    doc: dict[str, Any] | None
    try:
        loaded = orjson.loads(raw)
        doc = loaded if isinstance(loaded, dict) else None
    except (orjson.JSONDecodeError, TypeError):
        doc = None
    message = TapMessage(channel=channel, kind=kind, timestamp=timestamp, raw=raw, doc=doc, position=position)
    if doc is not None:
        inside = doc.get("task_id")
        message.task_id = inside if isinstance(inside, str) and inside else task_id
        if kind == "task" and "payload" in doc:  # what was asked; `raw` keeps the wire bytes
            doc["payload"] = asked(doc["payload"], message.task_id)
        agent = doc.get("agent_name") or doc.get("agent")
        message.agent = agent if isinstance(agent, str) else agent_of_channel(channel)
        status = doc.get("status")
        message.status = status if isinstance(status, str) else ("queued" if kind == "task" else None)
        if kind == "response" and message.task_id is None:
            message.status = f"unmatched ({message.status or 'no status'}): no task id"
    else:
        message.agent = agent_of_channel(channel)
        message.status = "undecodable" if kind != "dlq" else None
    return message
