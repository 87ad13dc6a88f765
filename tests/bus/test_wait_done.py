"""wait_done(): a request's wait for a possibly shared response future (pure asyncio)."""

from __future__ import annotations

import asyncio
import time

from sandbox.bus.waiters import wait_done


async def test_it_returns_when_the_future_is_done() -> None:
    shared = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_later(0.05, shared.set_result, "answer")
    await asyncio.wait_for(wait_done(shared, 30), 5)
    assert shared.result() == "answer"


async def test_it_returns_after_the_timeout_and_leaves_the_future_pending() -> None:
    shared = asyncio.get_running_loop().create_future()
    started = time.monotonic()
    await wait_done(shared, 0.1)
    assert time.monotonic() - started >= 0.09
    assert not shared.done()  # another waiter of the same task id still gets its answer
    shared.set_result("late")
    assert shared.result() == "late"


async def test_cancelling_the_caller_does_not_cancel_the_shared_future() -> None:
    shared = asyncio.get_running_loop().create_future()
    waiting = asyncio.create_task(wait_done(shared, 30))
    await asyncio.sleep(0.01)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert waiting.cancelled() and not shared.cancelled() and not shared.done()


async def test_a_failed_future_ends_the_wait_and_keeps_its_error() -> None:
    shared = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(shared.set_exception, ConnectionError("bus closed"))
    await wait_done(shared, 30)
    assert isinstance(shared.exception(), ConnectionError)
