"""A bounded, virtual list fed in batches: the core of the Logs and Messages views.

DataTable measures every cell of every new row (about 280 ms for 2,000 rows on
this machine), so a broker tap at 20,000 msgs/s would freeze it. This widget
keeps items in a ring, folds new ones in on a timer and renders only the lines
on screen (Textual's Line API), so the cost per frame does not grow with input.

`add` may be called from a reading thread (see live_view.py and
live_inbox.py): the items are packed and matched against the filter there; the
UI's loop only folds the batches in, once per tick.

Kept items are packed into plain tuples of strings and numbers (`pack`): the
cyclic GC stops tracking those, so ten thousand kept items cost a full
collection nothing; `unpack` makes the item again for a line drawn, the
selection or the filter.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from itertools import compress
from operator import itemgetter
from typing import Any, Generic, TypeVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from sandbox.tui.live_inbox import Entry, Inbox, pair

T = TypeVar("T")

# Lines kept rendered (as segments): a few screens' worth.
CACHED_LINES = 128


class LiveLines(ScrollView, Generic[T], can_focus=True):
    """Items rendered one line each; follows the end unless you scroll or select."""

    COMPONENT_CLASSES = {"live-lines--cursor"}

    DEFAULT_CSS = """
    LiveLines {
        background: $surface;
        & > .live-lines--cursor { background: $block-cursor-blurred-background; }
        &:focus > .live-lines--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: $block-cursor-text-style;
        }
    }
    """

    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "top", "Top", show=False),
        Binding("end", "follow", "Follow"),
    ]

    class Selected(Message):
        """Enter (or a click on the highlighted line) on an item."""

        def __init__(self, live: LiveLines[Any], item: Any) -> None:
            super().__init__()
            self.live = live
            self.item = item

        @property
        def control(self) -> LiveLines[Any]:
            return self.live

    def __init__(
        self,
        render_item: Callable[[T], Text],
        *,
        keep: int = 10_000,
        max_rows: int | None = None,
        flush_every: float = 0.1,
        selectable: bool = True,
        item_width: Callable[[T], int] | None = None,
        pack: Callable[[int, T], Entry] = pair,
        unpack: Callable[[Entry], T] = itemgetter(1),
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.render_item = render_item
        self.keep = keep
        self.max_rows = max_rows or keep
        self.flush_every = flush_every
        self.selectable = selectable
        self.item_width = item_width  # None: lines are cropped, no horizontal scroll
        self.unpack = unpack  # the packed tuple -> the item
        self._inbox: Inbox[T] = Inbox(keep, pack)
        self._ring: deque[Entry] = deque(maxlen=keep)
        self._rows: list[Entry] = []
        self._wide = 0
        # Segments, not Strips: a Strip keeps seven caches of the Strips made from it when drawn, so
        # 1,024 cached Strips per view were ~100,000 objects alive for the GC to walk. A fresh Strip per
        # frame lets those go with the frame.
        self._cache: LRUCache[tuple[int, bool], tuple[list[Segment], int]] = LRUCache(CACHED_LINES)
        self.cursor = -1  # index into the rows; -1 = none
        self.following = True  # stick to the newest line (until you scroll up or select)
        self.paused = False
        self.held = 0  # items that arrived while paused

    # -- feeding ---------------------------------------------------------------
    @property
    def _matcher(self) -> Callable[[T], bool] | None:
        return self._inbox.filter[1]

    @property
    def received(self) -> int:
        """Every item ever added."""
        return self._inbox.received

    def new_source(self) -> int:
        """A new reader; items added with an older source number are dropped from now on (Inbox.new_source)."""
        return self._inbox.new_source()

    def add(self, items: Iterable[T], source: int | None = None) -> None:
        """Queue items; they appear at the next flush. Safe from any thread; the filter runs in the caller's."""
        self._inbox.add(items, source)

    def on_mount(self) -> None:
        self.set_interval(self.flush_every, self.flush, name="flush")

    def flush(self) -> None:
        """Fold queued items into the ring and the visible rows."""
        if not self._inbox:
            return
        generation, match = self._inbox.filter
        unpack = self.unpack
        shown: list[Entry] = []
        for made_with, batch, matched in self._inbox.take():
            self._ring.extend(batch)
            if self.paused:
                self.held += len(batch)
            elif match is None:
                shown.extend(batch)
            elif made_with == generation and matched is not None:  # matched on the reading thread
                shown.extend(compress(batch, matched))
            else:  # matched before the filter changed
                shown.extend(entry for entry in batch if match(unpack(entry)))
        if shown:
            self._append_rows(shown[-self.max_rows :])

    def _append_rows(self, entries: list[Entry]) -> None:
        follow = self.following
        rows = self._rows
        rows.extend(entries)
        drop = len(rows) - self.max_rows
        if drop > 0:
            del rows[:drop]
            if self.cursor >= 0:
                self.cursor = max(0, self.cursor - drop)
            if not follow:  # keep the lines being read where they are
                self.scroll_to(y=max(0, self.scroll_y - drop), animate=False, immediate=True)
        if self.item_width is not None:
            unpack = self.unpack
            self._wide = max(self._wide, max(self.item_width(unpack(entry)) for entry in entries[-500:]))
        self._update_size()
        self._stick()
        self.refresh()

    def _stick(self) -> None:
        """Scroll to the end once the new size is laid out (max_scroll_y is stale until then)."""
        if self.following:
            self.scroll_end(animate=False, x_axis=False)

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        # Scrolling up (wheel, scrollbar, keys) stops following; back at the end resumes it.
        self.following = self.cursor < 0 and new >= self.max_scroll_y

    def on_resize(self) -> None:
        self._stick()

    def on_show(self) -> None:
        self._stick()

    def _update_size(self) -> None:
        width = self._wide if self.item_width is not None else 0
        self.virtual_size = Size(width, len(self._rows))

    def _rebuild(self) -> None:
        match = self._matcher
        unpack = self.unpack
        rows = list(self._ring) if match is None else [entry for entry in self._ring if match(unpack(entry))]
        self._rows = rows[-self.max_rows :]
        self.cursor = -1
        self.following = True
        self._cache.clear()
        self._update_size()
        self._stick()
        self.refresh()

    # -- controls --------------------------------------------------------------
    def set_filter(self, matcher: Callable[[T], bool] | None) -> None:
        """Show only matching items (applied to everything kept, then to new items)."""
        self.flush()
        self._inbox.set_matcher(matcher)
        self._rebuild()

    def set_paused(self, paused: bool) -> None:
        """Freeze the view; items keep arriving into the ring and show on resume."""
        self.flush()
        self.paused = paused
        if not paused:
            self.held = 0
            self._rebuild()

    def clear(self) -> None:
        self._inbox.take()
        self._ring.clear()
        self._rows = []
        self._wide = 0
        self.held = 0
        self.cursor = -1
        self.following = True
        self._cache.clear()
        self._update_size()
        self.refresh()

    @property
    def row_count(self) -> int:
        return len(self._rows)

    @property
    def kept(self) -> int:
        return len(self._ring)

    @property
    def selected(self) -> T | None:
        return self.unpack(self._rows[self.cursor]) if 0 <= self.cursor < len(self._rows) else None

    def items(self) -> list[T]:
        """The items shown, oldest first."""
        unpack = self.unpack
        return [unpack(entry) for entry in self._rows]

    # -- cursor ----------------------------------------------------------------
    def _move_to(self, index: int) -> None:
        if not self._rows or not self.selectable:
            return
        self.following = False
        self.cursor = max(0, min(index, len(self._rows) - 1))
        height = self.scrollable_content_region.height or 1
        if self.cursor < self.scroll_y:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= self.scroll_y + height:
            self.scroll_to(y=self.cursor - height + 1, animate=False, immediate=True)
        self.refresh()

    def action_cursor(self, delta: int) -> None:
        if not self.selectable:
            self.scroll_to(y=self.scroll_y + delta, animate=False)
            return
        if self.cursor < 0:  # start from the last line on screen
            height = self.scrollable_content_region.height or 1
            self._move_to(min(len(self._rows) - 1, int(self.scroll_y) + height - 1))
        else:
            self._move_to(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        height = self.scrollable_content_region.height or 1
        if self.selectable and self.cursor >= 0:
            self._move_to(self.cursor + direction * height)
        else:
            self.scroll_to(y=self.scroll_y + direction * height, animate=False)

    def action_top(self) -> None:
        if self.selectable:
            self._move_to(0)
        else:
            self.scroll_home(animate=False)

    def action_follow(self) -> None:
        """Drop the selection and stick to the newest line."""
        self.cursor = -1
        self.following = True
        self._stick()
        self.refresh()

    def action_select(self) -> None:
        """The chosen item; with none chosen, the newest (what a following view shows last)."""
        if not self.selectable:
            return
        if self.selected is None and self._rows:
            self._move_to(len(self._rows) - 1)
        item = self.selected
        if item is not None:
            self.post_message(self.Selected(self, item))

    def key_enter(self, event: events.Key) -> None:
        if self.selectable and self._rows:
            event.stop()
            self.action_select()

    def on_click(self, event: events.Click) -> None:
        if not self.selectable:
            return
        offset = event.get_content_offset(self)
        if offset is None:
            return
        index = int(self.scroll_y) + offset.y
        if 0 <= index < len(self._rows):
            if index == self.cursor or event.chain > 1:
                self.cursor = index
                self.action_select()
            else:
                self._move_to(index)

    # -- rendering -------------------------------------------------------------
    def invalidate(self) -> None:
        """Render every line again (the item renderer changed, e.g. on resize)."""
        self._cache.clear()
        self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._cache.clear()

    def on_focus(self) -> None:
        self._cache.clear()

    def on_blur(self) -> None:
        self._cache.clear()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        base = self.rich_style
        index = scroll_y + y
        if index >= len(self._rows):
            return Strip.blank(width, base)
        entry = self._rows[index]
        seq = entry[0]
        selected = index == self.cursor
        pad: Style = base
        if selected:
            pad = base + self.get_component_rich_style("live-lines--cursor")
        key = (seq, selected)
        cached = self._cache.get(key)
        if cached is None:
            text = self.render_item(self.unpack(entry))
            text.no_wrap = True
            text.end = ""
            if selected:
                text.stylize(pad)
            strip = Strip(list(text.render(self.app.console))).apply_style(base)
            cached = self._cache[key] = (list(strip), strip.cell_length)
        return Strip(*cached).crop_extend(scroll_x, scroll_x + width, pad)

