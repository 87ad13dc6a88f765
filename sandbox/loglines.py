"""Log lines for a process under load: the lines of a busy moment leave in one write.

A worker logs a line when a task arrives and one when it is done. Written one
by one (the sandbox runs Python unbuffered, so that lines reach the log as they
happen) that is two write calls per task and two wake-ups of supervisord,
which reads the workers' pipes: about a quarter of the Kafka stack's CPU per
task. `BatchedLines` keeps the lines (INFO and below) for at most FLUSH_S on a
running event loop and writes them together; a WARNING or worse, and any line
written with no event loop running in its thread (start-up, shutdown, other
threads), goes out at once with everything before it, in order. `info()` writes
a worker's per-task line the same way without making a LogRecord, when this
handler is the only one that would see it.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any, TextIO

FLUSH_S = 0.02  # the most an INFO line waits before it is written
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class StampCache(logging.Formatter):
    """logging's own format, with the date and time part of asctime made once per second."""

    def __init__(self, fmt: str = FORMAT):
        super().__init__(fmt)
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        return self.stamp(record.created, record.msecs)

    def stamp(self, created: float, msecs: float) -> str:
        second = int(created)
        if second != self._second:
            self._second, self._stamp = second, time.strftime(self.default_time_format, self.converter(second))
        return self.default_msec_format % (self._stamp, msecs)

    def line(self, name: str, level: str, text: str) -> str:
        """What format() makes of a record of `name` at `level` with message `text`, made now."""
        now = time.time()
        return f"{self.stamp(now, int((now - int(now)) * 1000))} {level} {name}: {text}"


class BatchedLines(logging.StreamHandler):  # type: ignore[type-arg]
    def __init__(self, stream: TextIO | None = None, flush_s: float = FLUSH_S):
        super().__init__(stream if stream is not None else sys.stdout)
        self.flush_s = flush_s
        self._lines: list[str] = []
        self._timer: asyncio.TimerHandle | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._lines.append(self.format(record) + self.terminator)
        except Exception:  # noqa: BLE001 - logging's own policy: report, never raise
            self.handleError(record)
            return
        self._after(record.levelno)

    def info_line(self, name: str, text: str) -> None:
        """An INFO line of logger `name`, kept as emit() keeps one, with no LogRecord made."""
        self._lines.append(self.formatter.line(name, "INFO", text) + self.terminator)  # type: ignore[union-attr]
        self._after(logging.INFO)

    def _after(self, levelno: int) -> None:
        if levelno >= logging.WARNING:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._timer = loop.call_later(self.flush_s, self.flush)

    def flush(self) -> None:
        self.acquire()
        try:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._lines:
                text, self._lines = "".join(self._lines), []
                try:
                    self.stream.write(text)
                except Exception:  # noqa: BLE001 - e.g. the pipe closed under us at shutdown
                    return
            super().flush()
        finally:
            self.release()


_installed: BatchedLines | None = None  # the handler setup() put on the root logger


def info(logger: logging.Logger, text: str, handler: BatchedLines | None = None) -> None:
    """An INFO line, already formatted by the caller (a worker's two lines per task).

    Straight into the batch when the sandbox's handler is the only one the line
    would reach, as in a worker process: no LogRecord, no handler chain. Through
    logging otherwise (another handler added, e.g. pytest's caplog, or filters).
    """
    handler = handler or _installed
    if handler is not None and logger.isEnabledFor(logging.INFO) and _only_reaches(logger, handler):
        handler.info_line(logger.name, text)
    else:
        logger.info("%s", text)


def _only_reaches(logger: logging.Logger, handler: BatchedLines) -> bool:
    """Whether a record of `logger` would be handled by `handler` alone, unfiltered."""
    node: Any = logger
    found = False
    while node is not None:
        if node.filters:
            return False
        if node.handlers:
            if found or node.handlers != [handler] or handler.filters:
                return False
            found = True
        if not node.propagate:
            break
        node = node.parent
    return found


def setup(level: str | int, stream: Any = None) -> logging.Handler:
    """The root logger writing batched lines in the sandbox's format (what basicConfig did before)."""
    # what the format does not show is not gathered per line (logging docs, "Optimization")
    logging._srcfile = None  # type: ignore[attr-defined]  # no caller frame walk (filename, lineno)
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = BatchedLines(stream)
    handler.setFormatter(StampCache())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    global _installed
    _installed = handler
    return handler
