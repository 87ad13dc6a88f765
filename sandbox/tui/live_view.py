"""What the Logs and Messages views share: a stream read into one LiveLines, its controls, its status line.

A view mixes `LiveView` in before its container class, builds `live`,
`filter_input`, `pause_button` and `status_label` in `compose`, and says what
its status line counts (`counts`). The bindings that call the actions stay on
the view, in the order its footer shows them.

The stream is read on the view's own thread (reader_thread.py): the UI's loop
draws and answers keys while a flood is decoded, formatted and filtered there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

from textual.binding import Binding
from textual.widgets import Button, Input, Label

from sandbox.tui.live_lines import LiveLines
from sandbox.tui.reader_thread import ReaderThread
from sandbox.tui.reporting import describe

T = TypeVar("T")

STATUS_EVERY_S = 0.5
AGAIN_AFTER_S = 2.0  # a stream that ended or failed is opened again after this
WAIT_S = 1.0  # how often a view that waits (for the broker) looks again
YIELD_EVERY = 256  # items read in a row before letting the reading thread's other tasks run
BATCH = 1024  # items handed to the view at once (at least every HAND_OVER_S)
HAND_OVER_S = 0.02

READING = "live view reading"  # the worker group of a view's stream (one per view)

# The keys both views have (each lists them in its BINDINGS, in its footer's order).
FILTER_KEY = Binding("slash", "focus_filter", "Filter")
PAUSE_KEY = Binding("p", "pause", "Pause/resume")
CLEAR_KEY = Binding("c", "clear", "Clear")


def always_ready() -> str | None:
    return None


class LiveView:
    """Filter / pause / clear, the status line and the read-and-retry loop of a LiveLines view."""

    live: LiveLines[Any]
    filter_input: Input
    pause_button: Button
    status_label: Label
    _note = ""  # what the stream is doing, after the counts
    _reader: ReaderThread | None = None

    # -- the status line -----------------------------------------------------------
    def counts(self) -> list[str]:
        """The first parts of the status line (how many lines are shown, kept...)."""
        raise NotImplementedError

    def show_status(self, note: str | None = None) -> None:
        if note is not None:
            self._note = note
        live = self.live
        parts = self.counts()
        if live.paused:
            parts.append(f"PAUSED ({live.held:,} new)")
        if self._note:
            parts.append(self._note)
        self.status_label.update(" · ".join(parts))

    def on_mount(self) -> None:
        self.set_interval(STATUS_EVERY_S, self.show_status)  # type: ignore[attr-defined]

    def flush(self) -> None:
        """Show what was added now, not at the next tick (tests and screenshots)."""
        self.live.flush()
        self.show_status()

    # -- the stream ------------------------------------------------------------------
    async def keep_reading(
        self,
        open_stream: Callable[[], tuple[str, AsyncIterator[T]]],
        add: Callable[[Sequence[T], int], None],
        *,
        ended: str,
        lost: str,
        not_ready: Callable[[], str | None] = always_ready,
    ) -> None:
        """Read a stream into the view until cancelled; open it again when it ends or fails.

        All three callables run on the view's reading thread, with its event loop:
        `open_stream` gives the status to show while reading and the stream;
        `add` takes a batch of items and this reader's source number (LiveLines.add: thread-safe);
        `not_ready` says what the view waits for, or None to open the stream now.
        """
        if self._reader is None:
            self._reader = ReaderThread(f"{type(self).__name__} reader")
        here = asyncio.get_running_loop()
        source = self.live.new_source()

        def add_ours(items: Sequence[T]) -> None:
            add(items, source)

        def status(note: str) -> None:  # from the thread: widgets are the UI loop's
            with contextlib.suppress(RuntimeError):  # the app's loop has closed
                here.call_soon_threadsafe(self.show_status, note)

        await self._reader.run(read_forever(open_stream, add_ours, status, ended, lost, not_ready))

    def stop_reading(self) -> None:
        """Stop the stream (its broker or runtime is going away); starting it again restarts it."""
        self.live.new_source()  # what its thread still hands over is dropped
        self.workers.cancel_group(self, READING)  # type: ignore[attr-defined]

    # -- controls ----------------------------------------------------------------------
    def focus_content(self) -> None:
        """Focus the lines (when the tab comes up): the view's keys work from there."""
        self.live.focus()

    def action_focus_filter(self) -> None:
        self.filter_input.focus()

    def action_pause(self) -> None:
        self.live.set_paused(not self.live.paused)
        self.pause_button.label = "Resume" if self.live.paused else "Pause"
        self.show_status()

    def action_clear(self) -> None:
        self.live.clear()
        self.show_status()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input is self.filter_input:  # done typing the filter: back to the lines
            self.live.focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button is self.pause_button:
            self.action_pause()


async def read_forever(
    open_stream: Callable[[], tuple[str, AsyncIterator[T]]],
    add: Callable[[Sequence[T]], None],
    status: Callable[[str], None],
    ended: str,
    lost: str,
    not_ready: Callable[[], str | None],
) -> None:
    """LiveView.keep_reading's loop, on the reading thread: items go to `add` in batches."""
    while True:
        waiting = not_ready()
        if waiting is not None:
            status(waiting)
            await asyncio.sleep(WAIT_S)
            continue
        batch: list[T] = []

        def hand_over() -> None:
            if batch:
                items = batch[:]
                batch.clear()
                add(items)

        async def hand_over_often() -> None:  # what arrived before the stream went quiet
            while True:
                await asyncio.sleep(HAND_OVER_S)
                hand_over()

        handing = asyncio.create_task(hand_over_often())
        try:
            note, stream = open_stream()
            status(note)
            async with contextlib.aclosing(stream) if hasattr(stream, "aclose") else contextlib.nullcontext():
                count = 0
                async for item in stream:
                    batch.append(item)
                    count += 1
                    if len(batch) >= BATCH:
                        hand_over()
                    if count % YIELD_EVERY == 0:
                        await asyncio.sleep(0)
            status(ended)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # shown in the status line; the loop tries again
            status(f"{lost}: {describe(error)}")
        finally:
            handing.cancel()
            hand_over()
        await asyncio.sleep(AGAIN_AFTER_S)
