"""Where a live view's new items wait for the next flush: filled from any thread, emptied by the UI's loop.

`add` runs on the caller's thread (a view's reading thread, see live_view.py):
it packs the items into plain tuples and matches them against the filter
there, and hands them over under a lock. LiveLines takes all of it once per tick.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from itertools import count
from typing import Any, Generic, TypeVar

T = TypeVar("T")

# An item as kept: (sequence number, its fields...); see `Inbox.pack`.
Entry = tuple[Any, ...]
# A batch as `add` leaves it: the filter's generation it was matched with, the entries, which ones match.
Batch = tuple[int, list[Entry], list[bool] | None]
Matcher = Callable[[Any], bool]


def pair(seq: int, item: Any) -> Entry:
    """The default packing: the item itself (tracked by the GC if it is a container)."""
    return (seq, item)


class Inbox(Generic[T]):
    """Batches of packed items for a LiveLines, with the filter they were matched with."""

    def __init__(self, keep: int, pack: Callable[[int, T], Entry] = pair) -> None:
        self.keep = keep  # more waiting than this: the oldest batches go (nobody flushed for a while)
        self.pack = pack  # (sequence number, item) -> a tuple starting with that number
        self.received = 0  # every item ever taken in
        self.source = 0  # the reader whose items are taken (`new_source`)
        # (generation, matcher): one attribute, so a reading thread never sees half a change
        self.filter: tuple[int, Matcher | None] = (0, None)
        self._batches: list[Batch] = []
        self._waiting = 0
        self._next_seq = 0
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self._batches)

    def set_matcher(self, matcher: Matcher | None) -> None:
        self.filter = (self.filter[0] + 1, matcher)

    def new_source(self) -> int:
        """A new reader: from now on items added with an older source number are dropped (a stopped
        reader's thread may still hand over its last batch after the view was cleared for the next)."""
        with self._lock:
            self.source += 1
            return self.source

    def add(self, items: Iterable[T], source: int | None = None) -> None:
        """Pack, match and queue items; `source`: the reader's number from `new_source` (None: always taken)."""
        items = list(items)
        if not items:
            return
        with self._lock:  # sequence numbers: unique across threads (they key the line cache)
            start = self._next_seq
            self._next_seq += len(items)
        pack = self.pack
        batch = [pack(seq, item) for seq, item in zip(count(start), items)]
        generation, match = self.filter
        matched = None if match is None else [match(item) for item in items]
        with self._lock:
            if source is not None and source != self.source:
                return
            batches = self._batches
            batches.append((generation, batch, matched))
            self._waiting += len(batch)
            self.received += len(batch)
            while len(batches) > 1 and self._waiting - len(batches[0][1]) >= self.keep:
                self._waiting -= len(batches.pop(0)[1])

    def take(self) -> list[Batch]:
        """Everything waiting, oldest first (and empty again)."""
        with self._lock:
            batches, self._batches, self._waiting = self._batches, [], 0
        return batches
