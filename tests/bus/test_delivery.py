"""The one "publish until stopped" loop both consumers use, without a broker."""

from __future__ import annotations

import asyncio
import logging

import pytest

from sandbox.bus import BusUnavailable
from sandbox.bus import delivery
from sandbox.bus.delivery import RetryPolicy, publish_until_stopped

POLICY = RetryPolicy("Broker", (BusUnavailable,), "left for the next owner", logging.getLogger("test"), most=0.2)


def failing(times: int, error: BaseException) -> tuple[list[int], object]:
    attempts: list[int] = []

    async def send() -> None:
        attempts.append(len(attempts) + 1)
        if len(attempts) <= times:
            raise error

    return attempts, send


async def test_an_answer_is_retried_until_the_broker_takes_it() -> None:
    attempts, send = failing(2, BusUnavailable("down"))
    assert await publish_until_stopped(send, "task t1", asyncio.Event(), POLICY) is True
    assert attempts == [1, 2, 3]


async def test_a_stopping_worker_gives_up_after_the_grace_period(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delivery, "GIVE_UP_AFTER_STOP_S", 0.3)
    stop = asyncio.Event()
    stop.set()
    attempts, send = failing(1_000, BusUnavailable("down"))
    assert await asyncio.wait_for(publish_until_stopped(send, "task t1", stop, POLICY), 5) is False
    assert len(attempts) >= 2  # it did retry before giving up


async def test_an_error_that_is_not_an_outage_is_not_retried() -> None:
    attempts, send = failing(1, ValueError("a bug"))
    with pytest.raises(ValueError):
        await publish_until_stopped(send, "task t1", asyncio.Event(), POLICY)
    assert attempts == [1]
