"""What the live views keep of a message or a log line: plain tuples the GC lets go, made back whole."""

from __future__ import annotations

import gc

from sandbox.bus import describe_message
from sandbox.runtime.base import LogLine
from sandbox.tui import message_rows
from sandbox.tui.formatting import one_line
from sandbox.tui.logs_view import pack_line, unpack_line
from sandbox.tui.message_rows import payload_of, row_of, squeezed


def test_a_kept_message_is_a_plain_tuple_the_gc_stops_tracking_and_comes_back_whole():
    raw = b'{"task_id": "t-1", "agent_name": "writer", "payload": {"query": "caf\\u00e9", "n": [1, 2]}, "created_at": 1}'
    message = describe_message("laddr.tasks.writer", "task", raw, 1_760_000_000.5, "0:42")
    message.status = "dead: poison"  # what the tap may set after describing (a DLQ reason)
    entry = message_rows.pack(7, message)
    assert type(entry) is tuple and entry[0] == 7
    gc.collect()
    assert not gc.is_tracked(entry)  # only strings, bytes, numbers: ten thousand of them cost a collection nothing
    row = message_rows.unpack(entry)
    assert row == row_of(message) and row.payload == payload_of(message) == '{"query":"café","n":[1,2]}'
    again = row.message()
    assert (again.task_id, again.agent, again.status, again.position) == ("t-1", "writer", "dead: poison", "0:42")
    assert row.doc == message.doc and row.decoded
    undecodable = row_of(describe_message("laddr.dlq", "dlq", b"{not json", 1.0, "0:1"))
    assert undecodable.doc is None and not undecodable.decoded and undecodable.payload == "{not json"


def test_a_kept_log_line_is_a_plain_tuple_too():
    line = LogLine("writer_worker", "writer_worker-2", "INFO done", 1.5)
    entry = pack_line(3, line)
    gc.collect()
    assert not gc.is_tracked(entry) and unpack_line(entry) == line


def test_squeezed_json_reads_as_one_line_did():
    for value in ({"a": "x  y\nz", "b": [1, 2.5, None, True]}, ["é", {"k": {}}], {"long": "w" * 500}):
        assert squeezed(value) == one_line(value)
    assert squeezed({1: "int key"}) == '{"1":"int key"}'
    assert squeezed({"s": {1, 2}}) == one_line({"s": {1, 2}})  # not JSON: json.dumps(default=str) as before
