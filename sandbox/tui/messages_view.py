"""A live tap of every message on the broker, like kcat: tail from the end or replay the last N."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, Select, Static

from sandbox.bus import TapMessage
from sandbox.export import message_doc
from sandbox.tui import message_rows
from sandbox.tui.export import export
from sandbox.tui.formatting import STATE_STYLES, clock, short_id
from sandbox.tui.live_lines import LiveLines
from sandbox.tui.live_view import CLEAR_KEY, FILTER_KEY, PAUSE_KEY, READING, LiveView
from sandbox.tui.message_detail import MessageDetail
from sandbox.tui.message_rows import MessageRow, row_of, search_text
from sandbox.tui.seek_dialog import Seek, SeekDialog, parse_seek
from sandbox.tui.stack import stack_of

ALL = "*"
# (title, width); the payload takes what is left of the line.
WIDE = (("time", 12), ("topic / stream", 23), ("task", 8), ("agent", 11), ("status", 9))
NARROW = (("time", 8), ("topic / stream", 23), ("task", 8), ("status", 9))


class MessagesView(LiveView, Vertical):
    """Messages as they cross the broker; enter on one shows it whole."""

    BINDINGS = [
        Binding("enter", "open", "Open", tooltip="the chosen (else the newest) message as pretty JSON"),
        FILTER_KEY, PAUSE_KEY, Binding("R", "replay", "Replay last N"), CLEAR_KEY,
        Binding("g", "seek", "Seek", tooltip="start at a time (10m, 2026-12-02T10:00) or an offset, then follow"),
        Binding("x", "export", "Export", tooltip="save the messages shown as JSONL (as watch --json prints them)"),
    ]

    def __init__(self, *, keep: int = 10_000, max_rows: int = 2_000, id: str | None = None) -> None:
        super().__init__(id=id)
        self.keep = keep
        self.max_rows = max_rows
        self.compact = False
        self.channels: set[str] = set()
        self._shown_channels: set[str] = set()
        self.tapped_backend: str | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(classes="toolbar"):
            yield Select([], prompt="all topics", id="tap-channel", compact=True)
            self.filter_input = Input(placeholder="filter messages…  (/)", id="tap-filter", compact=True)
            yield self.filter_input
            yield Input("100", id="tap-last", type="integer", compact=True, tooltip="how many to replay")
            yield Button("Replay", id="tap-replay", compact=True, tooltip="replay the last N messages (R)")
            self.pause_button = Button("Pause", id="tap-pause", compact=True)
            yield self.pause_button
        yield Static(self._header(), id="tap-header")
        self.live: LiveLines[MessageRow] = LiveLines(
            self.render_message, keep=self.keep, max_rows=self.max_rows, id="tap-lines",
            pack=message_rows.pack, unpack=message_rows.unpack,
        )
        yield self.live
        self.status_label = Label("", id="tap-status", classes="status-line")
        yield self.status_label

    # -- rendering ---------------------------------------------------------------
    def _header(self) -> Text:
        text = Text(style="bold")
        for title, width in NARROW if self.compact else WIDE:
            text.append(f"{title[:width]:<{width}} ")
        text.append("payload")
        return text

    def render_message(self, message: TapMessage | MessageRow) -> Text:
        """One row's line, made when it is drawn (rows keep strings, no Rich objects)."""
        message = row_of(message)
        columns = NARROW if self.compact else WIDE
        time_text = clock(message.timestamp)[: columns[0][1]]
        text = Text()
        text.append(f"{time_text} ", style="dim")
        text.append(f"{message.channel[:23]:<23} ", style=STATE_STYLES.get(message.kind, ""))
        text.append(f"{short_id(message.task_id):<8} ")
        if not self.compact:
            text.append(f"{(message.agent or '')[:11]:<11} ")
        status = message.status or ("-" if message.kind == "task" else "")
        if message.kind == "response" and message.task_id is None:  # answers naming no task (Laddr on Kafka)
            status = "unmatched"
        text.append(f"{status[:9]:<9} ", style=STATE_STYLES.get(status, "yellow" if status == "unmatched" else ""))
        text.append(message.payload, style="" if message.decoded else "dim")
        return text

    def on_resize(self) -> None:
        compact = self.size.width < 100
        if compact != self.compact:
            self.compact = compact
            self.query_one("#tap-header", Static).update(self._header())
            self.live.invalidate()

    # -- data --------------------------------------------------------------------
    def add_messages(self, messages: Sequence[TapMessage | MessageRow], source: int | None = None) -> None:
        """Queue messages; the view folds them in every 100 ms. Called on the tap's reading thread too."""
        self.live.add(messages, source)
        self.channels.update({m.channel for m in messages})  # one C-level update: safe beside the UI reading it

    def counts(self) -> list[str]:
        live = self.live
        return [f"{live.received:,} received", f"{live.row_count:,} shown", f"{live.kept:,} kept"]

    def show_status(self, note: str | None = None) -> None:
        if self.channels != self._shown_channels:  # rare: a new topic appeared
            self._shown_channels = set(self.channels)
            select = self.query_one("#tap-channel", Select)
            current = select.value
            select.set_options([(c, c) for c in sorted(self.channels)])
            if current in self.channels:
                select.value = current
        super().show_status(note)

    # -- the tap -------------------------------------------------------------------
    @work(exclusive=True, group=READING, exit_on_error=False)
    async def start_tap(self, last: int = 0, seek: Seek | None = None) -> None:
        """Tap the broker until cancelled (or `stop_reading`); reconnects when the broker comes back.

        `last` replays the newest N first; `seek` starts at a time or an offset instead (once: a
        reconnect goes on from the end, as after a replay)."""
        stack = stack_of(self)
        if stack is None:
            return
        replay, start = last, seek
        if stack.backend != self.tapped_backend:  # the topic filter lists the current broker's names only
            self.tapped_backend = stack.backend
            self.channels.clear()

        def open_tap() -> tuple[str, AsyncIterator[TapMessage]]:
            nonlocal replay, start
            (last, replay), (seek, start) = (replay, 0), (start, None)  # once, not on every reconnect
            note = f" (replayed last {last})" if last else f" (from {seek.text})" if seek else ""
            since, at = (seek.since, seek.at) if seek else (None, None)
            return f"tapping {stack.backend}{note}", stack.tap(last=last, since=since, at=at)

        def not_ready() -> str | None:
            return "waiting for the broker" if stack.switching or stack.bus is None else None

        await self.keep_reading(open_tap, self.add_messages, ended="tap ended", lost="tap lost", not_ready=not_ready)

    # -- controls --------------------------------------------------------------
    def _apply_filter(self) -> None:
        channel = self.query_one("#tap-channel", Select).value
        needle = self.filter_input.value.strip().lower()
        channel = channel if isinstance(channel, str) else None
        if channel is None and not needle:
            self.live.set_filter(None)
            return

        def matches(message: MessageRow) -> bool:
            if channel is not None and message.channel != channel:
                return False
            return not needle or needle in search_text(message)

        self.live.set_filter(matches)

    @on(Select.Changed, "#tap-channel")
    @on(Input.Changed, "#tap-filter")
    def _filters_changed(self) -> None:
        self._apply_filter()

    @on(LiveLines.Selected, "#tap-lines")
    def _open(self, event: LiveLines.Selected) -> None:
        event.stop()
        self.app.push_screen(MessageDetail(event.item))

    def action_open(self) -> None:
        self.live.action_select()

    def action_replay(self) -> None:
        raw = self.query_one("#tap-last", Input).value
        last = int(raw) if raw.strip().isdigit() else 100
        self.stop_reading()  # nothing of the tap before shows after the clear
        self.live.clear()
        self.start_tap(last)

    def action_seek(self) -> None:
        stack = stack_of(self)
        if stack is None or stack.backend is None:
            self.notify("No broker to seek on", severity="warning", timeout=3)
            return
        self.app.push_screen(SeekDialog(stack.backend, self.selected_channel), self._seek_chosen)

    @property
    def selected_channel(self) -> str | None:
        channel = self.query_one("#tap-channel", Select).value
        return channel if isinstance(channel, str) else None

    def _seek_chosen(self, text: str | None) -> None:
        stack = stack_of(self)
        if not text or not text.strip() or stack is None or stack.backend is None:
            return
        try:
            seek = parse_seek(text, stack.backend, self.selected_channel)
        except ValueError as error:  # one line; the view keeps tapping as before
            self.notify(str(error), severity="warning", timeout=8)
            return
        self.live.clear()
        self.start_tap(seek=seek)

    def action_export(self) -> None:
        export(self, "messages", (message_doc(m) for m in self.live.items()), "messages")

    @on(Input.Submitted, "#tap-last")
    @on(Button.Pressed, "#tap-replay")
    def _replay_pressed(self) -> None:
        self.action_replay()
