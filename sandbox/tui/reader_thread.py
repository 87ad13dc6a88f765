"""A thread with an event loop of its own, where a live view reads its stream.

At 20,000 items/s, reading, decoding and formatting on the UI's loop took
nearly a core: keys waited behind it. On this thread the stream's client
(broker or log follower), the decoding and the formatting run beside the UI;
the UI's loop only takes one batch per tick (LiveLines.flush).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

CLEANUP_S = 5.0  # how long a cancelled reader may take to close its stream


class ReaderThread:
    """Runs coroutines on one daemon thread (started on first use); cancelling the caller cancels them there."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def _thread_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name=self.name, daemon=True).start()
                self._loop = loop
            return self._loop

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` run on the thread; when the caller is cancelled, so is `coro` (its cleanup awaited)."""
        here = asyncio.get_running_loop()
        there = self._thread_loop()
        done: asyncio.Future[T] = here.create_future()
        tasks: list[asyncio.Task[T]] = []

        def settle(task: asyncio.Task[T]) -> None:  # on the caller's loop
            if done.done():
                return
            if task.cancelled():
                done.cancel()
            elif task.exception() is not None:
                done.set_exception(task.exception())  # type: ignore[arg-type]
            else:
                done.set_result(task.result())

        def finished(task: asyncio.Task[T]) -> None:  # on the thread
            with contextlib.suppress(RuntimeError):  # the caller's loop has closed: nobody waits
                here.call_soon_threadsafe(settle, task)

        def begin() -> None:  # on the thread
            task = there.create_task(coro)
            task.add_done_callback(finished)
            tasks.append(task)

        there.call_soon_threadsafe(begin)
        try:
            return await asyncio.shield(done)
        except asyncio.CancelledError:
            there.call_soon_threadsafe(lambda: [task.cancel() for task in tasks])  # after begin: FIFO
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(done), CLEANUP_S)
            raise
