"""Sending a task again as a new one: its agent and payload, found on the broker by task or dead-letter id.

Shared by the CLI (`resend`) and the TUI (`a` on a Messages, Send-history or Dead-letters row).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from sandbox.bus.base import Bus
from sandbox.protocol import SANDBOX_META, agent_of_channel, asked


@dataclass
class Original:
    task_id: str
    agent: str
    payload: Any


def clean(payload: Any, task_id: str) -> Any:
    """What was asked, without the bookkeeping a client or a requeue added (job id, sandbox meta)."""
    payload = asked(payload, task_id)
    if isinstance(payload, dict):
        return {k: v for k, v in payload.items() if k != SANDBOX_META}
    return payload


async def find_original(bus: Bus, wanted: str) -> Original | None:
    """The task `wanted` names (a task id or a dead letter's id), if the broker still holds it."""
    for letter in await bus.dead_letters(100_000):
        if letter.id == wanted:
            try:
                doc = orjson.loads(letter.raw)
            except orjson.JSONDecodeError:
                return None
            agent = agent_of_channel(letter.source) or (doc.get("agent_name") if isinstance(doc, dict) else None)
            if not isinstance(doc, dict) or not agent:
                return None
            task_id = str(doc.get("task_id") or wanted)
            return Original(task_id, agent, clean(doc.get("payload"), task_id))
    for message in reversed(await bus.history()):
        if message.kind == "task" and message.task_id == wanted and message.doc and message.agent:
            return Original(wanted, message.agent, clean(message.doc.get("payload"), wanted))
    return None
