"""Following one task in the TUI on a REAL local stack, once on Redis and once on Kafka: `g` seeks
Messages to a time and keeps following, Queues shows the rate a paced load produced, `x` saves what
Messages, a trace and Dead letters hold as JSONL (the CLI's --json records)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from pathlib import Path

import pytest
from textual.widgets import Input

from sandbox.export import dumps, letter_doc, message_doc
from sandbox.tui.dead_letters_view import DeadLettersView, task_id_of
from sandbox.tui.messages_view import MessagesView
from sandbox.tui.queues_view import QueuesView
from sandbox.tui.seek_dialog import SeekDialog
from sandbox.tui.trace_screen import TraceScreen
from tests.tui.test_app_live import errors, live_runtime, until  # noqa: F401  (live_runtime: a fixture)
from tests.tui.test_trace_tui import cursor_on_task, running

LOAD_AGENT = "writer"


async def seek(pilot, text: str) -> None:
    await pilot.press("3")
    pilot.app.main.query_one(MessagesView).focus_content()
    await pilot.press("g")
    dialog = await until(lambda: isinstance(pilot.app.screen, SeekDialog) and pilot.app.screen, "the seek input", 10)
    dialog.query_one("#seek-input", Input).value = text
    await pilot.press("enter")
    await until(lambda: not isinstance(pilot.app.screen, SeekDialog), "the seek input closed", 10)


def shown(app) -> set[str]:
    """The notifications up now (they expire: compare by identity, not by position)."""
    return {n.identity for n in app._notifications}


def new_notes(app, before: set[str]) -> list[str]:
    return [n.message for n in app._notifications if n.identity not in before]


async def saved(pilot, key: str, what: str) -> list[dict]:
    """Press `key` (x), wait for "Saved N <what> to PATH", return the file's records."""
    before = shown(pilot.app)
    await pilot.press(key)
    note = await until(lambda: next((n for n in new_notes(pilot.app, before) if n.startswith("Saved ")
                                     and f" {what} to " in n), None), f"the {what} saved", 10)
    path = Path(note.split(" to ", 1)[1])
    assert path.parent.name == "exports" and path.suffix == ".jsonl", path
    return [json.loads(line) for line in path.read_text().splitlines()]


def shown_rate(view: QueuesView, agent: str) -> tuple[float, float, float, float]:
    """In/s and answered/s as the table shows them, and the window (monotonic) of the samples behind them."""
    table = view.query_one("#queues-table")
    row = next(table.get_row_at(i) for i in range(table.row_count) if str(table.get_row_at(i)[0]) == agent)
    kept = view.rates.samples[agent]
    last = kept[-1]
    first = next(s for s in kept if last.at - s.at <= view.rates.span_s)
    return float(str(row[3])), float(str(row[4])), first.at, last.at


@pytest.mark.timeout(900)
@pytest.mark.parametrize("backend", ["redis", "kafka"])
async def test_seek_rates_and_exports_on_a_live_stack(live_runtime, backend) -> None:  # noqa: F811
    async with running(live_runtime, backend, (120, 40)) as pilot:
        app = pilot.app
        stack = app.stack
        messages = app.main.query_one(MessagesView)

        # -- g: from a time on, none earlier, and it keeps following ---------------------------
        before = await stack.request("researcher", {"query": "before the cut"}, 60)
        await asyncio.sleep(1.0)
        cut = time.time()
        await asyncio.sleep(0.3)
        after = await stack.request("researcher", {"query": "after the cut"}, 60)
        since = datetime.fromtimestamp(cut).isoformat(timespec="milliseconds")
        await seek(pilot, since)
        await until(lambda: any(m.task_id == after.task_id and m.kind == "response" for m in messages.live.items()),
                    "the task after the cut and its answer", 30)
        start = datetime.fromisoformat(since).timestamp()
        held = messages.live.items()
        assert not [m for m in held if m.task_id == before.task_id], "a message from before the cut"
        assert all(m.timestamp >= start - 0.002 for m in held), [(m.channel, m.timestamp) for m in held]
        assert any(m.task_id == after.task_id and m.kind == "task" for m in held)
        before_bad = shown(app)
        await seek(pilot, "yesterday-ish")  # bad input: one line, the view goes on
        await until(lambda: any("--from" in n for n in new_notes(app, before_bad)), "the bad seek said", 10)
        later = await stack.request("researcher", {"query": "later"}, 60)
        await until(lambda: any(m.task_id == later.task_id for m in messages.live.items()), "still following", 30)

        # -- Queues: the rate a paced load produced ------------------------------------------
        await pilot.press("4")
        queues = app.main.query_one(QueuesView)
        sent_at: list[float] = []

        async def one() -> None:
            await stack.bus.publish_task(LOAD_AGENT, {"topic": "load"})
            sent_at.append(time.monotonic())  # on the broker by now

        async def load() -> None:
            while True:  # not waiting for each publish: a slow ack must not slow the pace
                publishing.add(asyncio.create_task(one()))
                await asyncio.sleep(0.04)  # about 20 tasks/s

        publishing: set[asyncio.Task] = set()
        loading = asyncio.create_task(load())
        started = time.monotonic()
        try:
            await until(lambda: len([s for s in queues.rates.samples.get(LOAD_AGENT, ()) if s.at > started + 2.5])
                        >= 3, "three reads of the queues under load", 60)
            in_s, answered_s, first, last = shown_rate(queues, LOAD_AGENT)
        finally:
            loading.cancel()
            await asyncio.gather(*publishing, return_exceptions=True)
        produced = len([t for t in sent_at if first < t <= last]) / (last - first)  # the load's own count
        print(f"\n{backend}: load {produced:.1f}/s over {last - first:.1f} s; Queues shows in {in_s}/s, "
              f"answered {answered_s}/s")
        assert abs(in_s - produced) <= 0.2 * produced, (in_s, produced)
        assert 0 < answered_s <= in_s + 0.2 * produced, (answered_s, in_s)

        # -- x on Messages: what the view holds ------------------------------------------------
        await pilot.press("3")
        messages.focus_content()
        await pilot.press("p")  # hold the rows still while they are compared
        held = messages.live.items()
        records = await saved(pilot, "x", "messages")
        assert records == [json.loads(dumps(message_doc(m))) for m in held] and len(records) == len(held)
        assert any(r["task_id"] == after.task_id and r["kind"] == "response" for r in records)
        await pilot.press("p")

        # -- x on a trace ------------------------------------------------------------------------
        await cursor_on_task(pilot, "researcher")
        messages.live.cursor = next(i for i, m in enumerate(messages.live.items())
                                    if m.task_id == later.task_id and m.kind == "task")
        await pilot.press("t")
        screen = await until(lambda: isinstance(app.screen, TraceScreen) and app.screen, "the trace screen", 10)
        await until(lambda: screen.trace is not None and screen.trace.finished, "the finished trace", 60)
        [doc] = await saved(pilot, "x", "trace")
        assert doc == json.loads(dumps(screen.trace.to_dict()))
        assert doc["task_id"] == later.task_id and doc["tree"]["status"] == "success" and doc["logs"]
        await pilot.press("escape")
        await until(lambda: not isinstance(app.screen, TraceScreen), "the trace closed", 10)

        # -- x on Dead letters -------------------------------------------------------------------
        poison = await stack.request("analyzer", {"facts": [], "simulate": {"raise": "export me"}}, 120)
        await pilot.press("5")
        dlq = app.main.query_one(DeadLettersView)
        await until(lambda: any(task_id_of(d) == poison.task_id for d in dlq.letters.values()),
                    "the poison task in Dead letters", 90)
        dlq.focus_content()
        letters = list(dlq.letters.values())
        records = await saved(pilot, "x", "dead letters")
        assert records == [json.loads(dumps(letter_doc(d))) for d in letters]
        assert any(poison.task_id in json.dumps(r["payload"]) and "export me" in r["reason"] for r in records)
        assert not errors(app), errors(app)
