"""The Stack hands a runtime's progress lines to the UI on the UI's own loop, from any thread."""

from __future__ import annotations

import asyncio
import threading

from sandbox.tui.stack import on_this_loop


async def test_progress_from_a_thread_arrives_on_the_loop_in_order():
    seen: list[tuple[str, int]] = []
    relay = on_this_loop(lambda line: seen.append((line, threading.get_ident())))
    loop_thread = threading.get_ident()

    relay("on the loop")  # at once, not later
    assert seen == [("on the loop", loop_thread)]

    def in_a_thread() -> None:
        for n in range(3):
            relay(f"from a thread {n}")

    await asyncio.to_thread(in_a_thread)  # the lines are there before the await returns
    assert seen == [("on the loop", loop_thread), *((f"from a thread {n}", loop_thread) for n in range(3))]
