"""The live views read their streams on a thread of their own: rows arrive, filters and keys work meanwhile.

Behaviour only (which thread reads, what arrives, what the keys do), no timings: speed is bench/tui.py's.
"""

from __future__ import annotations

import asyncio
import threading

from textual.widgets import Label, TabbedContent

from sandbox.tui.live_view import READING
from sandbox.tui.logs_view import LogsView
from sandbox.tui.message_detail import MessageDetail
from sandbox.tui.messages_view import MessagesView
from tests.tui.test_app_live import until
from tests.tui.test_flood import fresh_lines, fresh_messages, key_latency


def flooding(make, seen: dict[str, object]):
    """A stream that yields batches as fast as it is read, noting its thread and when it is closed."""

    async def stream():
        start = 0
        try:
            while True:
                seen.setdefault("threads", set()).add(threading.get_ident())  # type: ignore[union-attr]
                for item in make(200, start):
                    yield item
                start += 200
                await asyncio.sleep(0.01)
        finally:
            seen["closed"] = True

    return stream()


def read(view, make, add, seen: dict[str, object]):
    return view.run_worker(
        view.keep_reading(lambda: ("reading the flood", flooding(make, seen)), add, ended="ended", lost="lost"),
        group=READING, exclusive=True, exit_on_error=False,
    )


async def test_streams_are_read_off_the_ui_thread_while_keys_and_filters_work(offline_app):
    app = offline_app
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        tap, logs = app.main.query_one(MessagesView), app.main.query_one(LogsView)
        app.main.query_one("#services").focus()
        seen_m: dict[str, object] = {}
        seen_l: dict[str, object] = {}
        read(tap, fresh_messages, tap.add_messages, seen_m)
        read(logs, fresh_lines, logs.add_log_lines, seen_l)

        await until(lambda: tap.live.row_count > 1_000 and logs.live.row_count > 1_000, "rows from both streams", 30)
        ui = threading.get_ident()
        assert seen_m["threads"] and ui not in seen_m["threads"]  # type: ignore[operator]
        assert seen_l["threads"] and ui not in seen_l["threads"]  # type: ignore[operator]
        assert seen_m["threads"] != seen_l["threads"]  # one thread per view
        await until(lambda: "reading the flood" in str(tap.query_one("#tap-status", Label).render()),
                    "the stream's status, told from its thread", 10)

        # keys answer while both streams flood (the same key path as a terminal's)
        tabs = app.main.query_one(TabbedContent)
        for key, tab in [("3", "messages"), ("2", "logs")] * 3:
            await key_latency(pilot, key, tab)
            assert tabs.active == f"{tab}-tab"

        # a filter applies to what is kept and to what keeps arriving (matched on the reading thread)
        tap.filter_input.value = "laddr.dlq"
        await pilot.pause()
        before = tap.live.received
        await until(lambda: tap.live.received > before + 2_000, "more messages after the filter", 30)
        tap.flush()
        shown = tap.live.items()
        assert shown and {m.channel for m in shown} == {"laddr.dlq"}
        tap.filter_input.value = ""
        await pilot.pause()
        assert {m.channel for m in tap.live.items()} != {"laddr.dlq"}

        # stopping a view's reading closes its stream (on its thread); the other goes on
        tap.stop_reading()
        await until(lambda: seen_m.get("closed"), "the tap's stream closed", 10)
        assert not seen_l.get("closed")
        counted = tap.live.received
        await pilot.pause(0.3)
        assert tap.live.received == counted

        # a kept row opens whole, its body decoded again from the bytes kept
        tap.flush()
        newest = tap.live.items()[-1]
        await pilot.press("3")
        tap.live.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, MessageDetail) and app.screen.message == newest
        assert isinstance(app.screen.decoded, dict) and app.screen.decoded["task_id"].encode() in newest.raw
        await pilot.press("escape")
        logs.stop_reading()
        await until(lambda: seen_l.get("closed"), "the log stream closed", 10)


async def test_a_failing_stream_is_told_and_opened_again(offline_app):
    app = offline_app
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        logs = app.main.query_one(LogsView)
        opened: list[int] = []

        async def broken():
            opened.append(threading.get_ident())
            for line in fresh_lines(3):
                yield line
            raise OSError("the follower went away")

        def open_stream():
            return "following", broken()

        logs.run_worker(logs.keep_reading(open_stream, logs.add_log_lines, ended="ended", lost="logs unavailable"),
                        group=READING, exclusive=True, exit_on_error=False)
        status = logs.query_one("#log-status", Label)
        await until(lambda: "logs unavailable" in str(status.render()) and "went away" in str(status.render()),
                    "the failure in the status line", 10)
        await until(lambda: len(opened) >= 2, "the stream opened again", 10)
        logs.flush()
        assert logs.live.received >= 6 and threading.get_ident() not in opened
        logs.stop_reading()


async def test_a_stopped_readers_last_batch_is_dropped_after_the_view_moves_on(offline_app):
    async with offline_app.run_test(size=(120, 40)) as pilot:
        logs = offline_app.main.query_one(LogsView)
        old = logs.live.new_source()
        logs.add_log_lines(fresh_lines(5), old)
        logs.stop_reading()  # e.g. following another service: the old thread may still hand a batch over
        logs.live.clear()
        logs.add_log_lines(fresh_lines(7), old)
        new = logs.live.new_source()
        logs.add_log_lines(fresh_lines(3), new)
        logs.add_log_lines(fresh_lines(2))  # fed directly (tests, demo data): always taken
        logs.flush()
        await pilot.pause()
        assert logs.live.row_count == 5 and logs.live.received == 10
