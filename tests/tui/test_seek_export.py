"""The seek input's parsing and the export files: pure logic, and `x` on an app fed fixed data."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from sandbox.export import dumps, message_doc, write_jsonl
from sandbox.tui.export import export_path
from sandbox.tui.seek_dialog import parse_seek


def test_a_time_ago_an_iso_time_or_an_offset_of_the_chosen_topic() -> None:
    assert parse_seek("10m", "kafka", None, now=1000.0).since == 400.0
    iso = parse_seek("2026-12-02T10:00", "redis", None)
    assert iso.since == datetime(2026, 12, 2, 10, 0).timestamp() and iso.at is None
    assert parse_seek(" 0:42 ", "kafka", "laddr.tasks.writer").at == ("laddr.tasks.writer", "0:42")
    assert parse_seek("1764000000000", "redis", "laddr:tasks:writer").at == ("laddr:tasks:writer", "1764000000000-0")


@pytest.mark.parametrize("text, backend, channel, says", [
    ("yesterday-ish", "kafka", None, "--from"),
    ("0:42", "kafka", None, "choose it in the topic list"),
    ("0:42", "redis", "laddr:tasks:writer", "--from"),  # a Kafka position on Redis: neither a time nor an id
])
def test_what_is_not_a_place_to_start_says_why(text: str, backend: str, channel: str | None, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_seek(text, backend, channel)


def test_exports_go_to_the_state_folder_one_document_a_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LADDR_STATE_DIR", str(tmp_path / "state"))
    path = export_path("messages", now=datetime(2026, 12, 2, 10, 0, 1, 250_000).timestamp())
    assert path == tmp_path / "state" / "exports" / "messages-20261202-100001-250.jsonl"
    assert write_jsonl(path, [{"a": 1}, {"b": [2]}]) == 2
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"a": 1}, {"b": [2]}]


async def test_x_saves_what_messages_shows_and_says_where(offline_app, tmp_path: Path, monkeypatch) -> None:
    from sandbox.tui.demo_data import populate
    from sandbox.tui.messages_view import MessagesView

    monkeypatch.setenv("LADDR_STATE_DIR", str(tmp_path))
    async with offline_app.run_test(size=(120, 40)) as pilot:
        populate(offline_app)
        await pilot.press("3")
        view = offline_app.main.query_one(MessagesView)
        view.filter_input.value = "researcher"  # what is shown, not all that is kept
        await pilot.pause()
        view.focus_content()
        shown = view.live.items()
        assert 0 < len(shown) < view.live.kept
        await pilot.press("x")
        [note] = [n.message for n in offline_app._notifications if n.message.startswith("Saved ")]
        path = Path(note.split(" to ", 1)[1])
        assert path.parent == tmp_path / "exports" and note.startswith(f"Saved {len(shown)} messages")
        assert [json.loads(line) for line in path.read_text().splitlines()] == \
            [json.loads(dumps(message_doc(m))) for m in shown]
        await pilot.press("g")  # no broker to seek on: said, the app goes on
        assert any("No broker" in n.message for n in offline_app._notifications)
