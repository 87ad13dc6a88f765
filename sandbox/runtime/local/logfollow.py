"""Tail and follow several log files as one stream, each line tagged by its file.

Lines of different replicas are interleaved by the timestamp at the start of
each line (worker, Kafka and Redis formats); a line without one (a traceback)
keeps the time of the line before it in the same file. Following polls (no
inotify, so it works everywhere) and survives rotation (the path gets a new
inode: the old file is read to its end first) and truncation.
"""

from __future__ import annotations

import asyncio
import heapq
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

# tag -> path; called again while following so new replicas join the stream
Sources = Callable[[], dict[str, Path]]

_ISO = re.compile(r"^\[?(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(?:[.,](\d{1,6}))?")
# redis-server: "1234:M 27 Nov 2025 09:50:01.123 * Ready to accept connections"
_REDIS = re.compile(r"^\d+:[A-Z] (\d{1,2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?")


def line_time(text: str) -> float | None:
    if m := _ISO.match(text):
        stamp = datetime.strptime(f"{m.group(1)} {m.group(2)}", "%Y-%m-%d %H:%M:%S")
        frac = m.group(3)
    elif m := _REDIS.match(text):
        stamp = datetime.strptime(m.group(1), "%d %b %Y %H:%M:%S")
        frac = m.group(2)
    else:
        return None
    return stamp.timestamp() + (int(frac) / 10 ** len(frac) if frac else 0.0)


@dataclass(order=True)
class Line:
    timestamp: float
    order: int  # ties keep each file's own order
    tag: str = field(compare=False)
    text: str = field(compare=False)


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\r")


def read_tail(path: Path, count: int, block: int = 65536) -> tuple[list[str], int]:
    """The last `count` complete lines of a file and the offset just after them.

    A last line still being written (no newline yet) is left for the follower.
    """
    try:
        f = open(path, "rb")
    except OSError:
        return [], 0
    with f:
        end = f.seek(0, os.SEEK_END)
        data = b""
        pos = end
        while pos > 0 and data.count(b"\n") <= count:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    complete_end = data.rfind(b"\n") + 1  # 0 when there is no complete line
    offset = end - (len(data) - complete_end)
    lines = data[:complete_end].split(b"\n")[:-1]
    if pos > 0 and lines:
        lines = lines[1:]  # the first one may be cut
    return [_decode(raw) for raw in lines[-count:]] if count > 0 else [], offset


def stamp(tag: str, texts: list[str], start_order: int, fallback: float) -> list[Line]:
    out = []
    last = fallback
    for i, text in enumerate(texts):
        ts = line_time(text)
        last = ts if ts is not None else last
        out.append(Line(last, start_order + i, tag, text))
    return out


def merge_tail(per_file: dict[str, list[str]], count: int, mtimes: dict[str, float]) -> list[Line]:
    """The last `count` lines over all files, in time order."""
    streams = []
    order = 0
    for tag, texts in per_file.items():
        # Lines before a file's first timestamp are older than it; a file with
        # no timestamps at all is as recent as its last write.
        stamped = any(line_time(t) is not None for t in texts)
        streams.append(stamp(tag, texts, order, float("-inf") if stamped else mtimes.get(tag, 0.0)))
        order += len(texts)
    merged = list(heapq.merge(*streams))
    return merged[-count:] if count > 0 else []


@dataclass
class _Cursor:
    path: Path
    handle: BinaryIO | None = None
    inode: int | None = None
    buffer: bytes = b""
    last_time: float = 0.0

    def open_at(self, offset: int) -> bool:
        try:
            self.handle = open(self.path, "rb")
        except OSError:
            self.handle = None
            return False
        self.inode = os.fstat(self.handle.fileno()).st_ino
        self.handle.seek(offset)
        self.buffer = b""
        return True

    def close(self) -> None:
        if self.handle:
            self.handle.close()
        self.handle = None

    def read(self) -> list[str]:
        """New complete lines, following rotation and truncation."""
        if self.handle is None:
            return self.read_lines() if self.open_at(0) else []
        lines = []
        try:
            st = os.stat(self.path)
        except OSError:
            st = None  # rotated away, new file not there yet: drain the old one
        if st is not None and st.st_ino != self.inode:
            lines += self.read_lines(flush=True)
            self.close()
            if self.open_at(0):
                lines += self.read_lines()
            return lines
        if st is not None and st.st_size < self.handle.tell():
            self.handle.seek(0)  # truncated (supervisor's clear log)
            self.buffer = b""
        return self.read_lines()

    def read_lines(self, flush: bool = False) -> list[str]:
        assert self.handle is not None
        data = self.buffer + self.handle.read()
        *complete, self.buffer = data.split(b"\n")
        if flush and self.buffer:
            complete.append(self.buffer)
            self.buffer = b""
        return [_decode(raw) for raw in complete]


async def follow_files(
    sources: Sources, *, tail: int = 100, follow: bool = False, poll: float = 0.2
) -> AsyncIterator[tuple[str, str, float | None]]:
    """Yield (tag, text, timestamp): the last `tail` lines overall, then new lines."""
    cursors: dict[str, _Cursor] = {}
    per_file: dict[str, list[str]] = {}
    mtimes: dict[str, float] = {}
    for tag, path in sorted(sources().items()):
        texts, offset = await asyncio.to_thread(read_tail, path, max(tail, 0))
        per_file[tag] = texts
        try:
            mtimes[tag] = path.stat().st_mtime
        except OSError:
            mtimes[tag] = 0.0
        cursor = _Cursor(path)
        if cursor.open_at(offset):
            cursors[tag] = cursor
    try:
        for line in merge_tail(per_file, tail, mtimes):
            if line.tag in cursors:
                cursors[line.tag].last_time = line.timestamp
            yield line.tag, line.text, line.timestamp if line.timestamp > 0 else None  # -inf: unknown
        if not follow:
            return
        while True:
            for tag, path in sorted(sources().items()):
                if tag not in cursors:
                    cursors[tag] = _Cursor(path)  # a new replica: from its first line
            got = False
            for tag, cursor in sorted(cursors.items()):
                for text in cursor.read():
                    got = True
                    ts = line_time(text)
                    cursor.last_time = ts if ts is not None else (cursor.last_time or time.time())
                    yield tag, text, cursor.last_time
            if not got:
                await asyncio.sleep(poll)
    finally:
        for cursor in cursors.values():
            cursor.close()
