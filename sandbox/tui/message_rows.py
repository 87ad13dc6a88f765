"""A tapped message as the Messages view keeps it: one plain tuple, decoded again only when opened.

A TapMessage holds its decoded JSON (a dict of dicts and lists): ten thousand of
them kept are tens of thousands of objects the cyclic GC walks on every
collection that reaches them (pauses of a quarter of a second under a 20,000
msg/s flood). The view keeps a plain tuple of the fields a line shows and the
raw bytes (`pack`), which the GC stops tracking; a MessageRow is made of it for
a line drawn or a row chosen, and its body decoded again for the detail view.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from sandbox.bus import TapMessage, describe_message
from sandbox.tui.formatting import one_line


class MessageRow(NamedTuple):
    channel: str
    kind: str
    timestamp: float
    raw: bytes
    task_id: str | None
    agent: str | None
    status: str | None
    position: str
    payload: str  # the payload column, made when the message arrived
    decoded: bool  # its body is a JSON object

    @property
    def doc(self) -> dict[str, Any] | None:
        """The decoded body, as the TapMessage had it (made again on each call: rows keep no dicts)."""
        return self.message().doc if self.decoded else None

    def message(self) -> TapMessage:
        """The TapMessage this row was made from (the names the tap gave it kept, e.g. a DLQ reason)."""
        message = describe_message(self.channel, self.kind, self.raw, self.timestamp, self.position, self.task_id)
        message.task_id, message.agent, message.status = self.task_id, self.agent, self.status
        return message


def squeezed(value: Any) -> str:
    """`one_line`, with orjson for the JSON (a few times faster than json.dumps, the same text)."""
    if isinstance(value, (dict, list)):
        try:
            return one_line(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode())
        except (TypeError, orjson.JSONEncodeError):  # what orjson does not take, json.dumps(default=str) does
            pass
    return one_line(value)


def payload_of(message: TapMessage | MessageRow) -> str:
    if isinstance(message, MessageRow):
        return message.payload
    doc = message.doc
    if doc is None:
        return one_line(message.raw)
    if message.kind == "response":
        return squeezed(doc.get("error") or doc.get("result"))
    if "payload" in doc:
        return squeezed(doc["payload"])
    return squeezed({k: v for k, v in doc.items() if k not in ("task_id", "created_at")})


def row_of(message: TapMessage | MessageRow) -> MessageRow:
    """The compact row of a message (run on the reading thread for the live tap)."""
    if isinstance(message, MessageRow):
        return message
    return MessageRow(message.channel, message.kind, message.timestamp, message.raw, message.task_id,
                      message.agent, message.status, message.position, payload_of(message),
                      message.doc is not None)


def pack(seq: int, message: TapMessage | MessageRow) -> tuple[Any, ...]:
    """What the view keeps of a message: (seq, the MessageRow's fields), run on the tap's reading thread."""
    if isinstance(message, MessageRow):
        return (seq, *message)
    return (seq, message.channel, message.kind, message.timestamp, message.raw, message.task_id, message.agent,
            message.status, message.position, payload_of(message), message.doc is not None)


def unpack(entry: tuple[Any, ...]) -> MessageRow:
    return MessageRow._make(entry[1:])


def search_text(message: TapMessage | MessageRow) -> str:
    """What the text filter looks in: the names and the first bytes of the body."""
    head = message.raw[:2048].decode("utf-8", "replace")
    return f"{message.channel} {message.task_id or ''} {message.agent or ''} {message.status or ''} {head}".lower()
