"""What a consumer does with a task once it has it, on either broker.

Size limits, the answer to publish (or the reason to give up), and the one
loop that keeps publishing an answer while the broker is away.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sandbox.bus.base import Handler, MessageTooLarge
from sandbox.bus.reconnect import Backoff, BrokerWatch
from sandbox.protocol import Response, Task, earlier_deliveries, without_earlier_deliveries

log = logging.getLogger("sandbox.bus")

# One limit on both brokers, below Kafka's default 1 MiB message size, so that
# a payload accepted on Redis is not refused after switching to Kafka.
MAX_MESSAGE_BYTES = 900_000
GIVE_UP_AFTER_STOP_S = 10.0  # a stopping worker stops retrying a publish after this


FILL_S = 0.005  # under load, how long a consumer waits for the tasks in flight before fetching more


async def room(concurrency: int, inflight: dict[Any, asyncio.Task[None]]) -> int:
    """Free slots to fetch into now.

    With nothing in flight, all of them at once. Otherwise first up to FILL_S
    for the tasks in flight to be answered: under load tasks then arrive in
    batches, and one fetch (on Kafka with the commit after it, on Redis with
    the answers' script call) serves a batch instead of one or two tasks each.
    A fetch made the moment a slot frees up would take whatever trickled in
    meanwhile, at the full price per fetch. 0 when none freed up meanwhile.
    """
    if inflight:
        await asyncio.wait(inflight.values(), timeout=FILL_S)
    return concurrency - len(inflight)


def check_size(raw: bytes) -> None:
    if len(raw) > MAX_MESSAGE_BYTES:
        raise MessageTooLarge(
            f"message is {len(raw):,} bytes; the sandbox accepts at most {MAX_MESSAGE_BYTES:,} "
            "(Kafka's default limit) — send a reference to large data instead"
        )


def dlq_reason(delivery_count: int) -> str:
    return f"delivered {delivery_count} times without being answered (worker crashed on it?)"


async def answer(handler: Handler, task: Task, delivery_count: int, max_deliveries: int) -> tuple[Response, str | None]:
    """Run a handler, retrying a raising one in place up to `max_deliveries` attempts.

    Returns the response to publish and, when the task is given up, the reason
    for the dead-letter place. The caller is answered either way (an "error"
    response), so nobody waits for a task that will never succeed.
    """
    # A requeued dead letter goes on counting from where it stopped, with a fresh budget.
    earlier = earlier_deliveries(task.payload)
    task = without_earlier_deliveries(task)
    count, delay, limit = delivery_count + earlier, 0.05, max_deliveries + earlier
    while True:
        if count > limit:  # e.g. a task that crashed workers again and again
            reason = dlq_reason(count - 1)
            return gave_up(task, count - 1, reason), reason
        try:
            return fit(await handler(task, count)), None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the handler's failure is data here, not a crash of the consumer
            reason = f"{type(exc).__name__}: {exc}"
            if count >= limit:
                return gave_up(task, count, reason), f"failed {count} time(s): {reason}"
            log.warning("task %s failed on attempt %d (%s); retrying in %.2fs", task.task_id, count, reason, delay)
            await asyncio.sleep(delay)
            count, delay = count + 1, min(2.0, delay * 2)


def fit(response: Response) -> Response:
    """A response the broker will take: a result over the size limit becomes an error saying so."""
    size = len(response.encode())
    if size <= MAX_MESSAGE_BYTES:
        return response
    log.warning("task %s: response of %d bytes is over the limit; answering with an error", response.task_id, size)
    return Response(
        task_id=response.task_id,
        status="error",
        error=f"the agent's result is {size:,} bytes; the sandbox sends at most {MAX_MESSAGE_BYTES:,} "
        "(Kafka's default limit) — return a reference to large data instead",
        agent=response.agent,
        worker_id=response.worker_id,
        duration_ms=response.duration_ms,
        delivery_count=response.delivery_count,
    )


def gave_up(task: Task, attempts: int, reason: str) -> Response:
    return Response(
        task_id=task.task_id,
        status="error",
        error=f"gave up after {attempts} attempt(s), sent to the dead-letter queue: {reason}",
        agent=task.agent_name,
        delivery_count=attempts,
    )


@dataclass(frozen=True)
class RetryPolicy:
    """How one backend's consumer retries a publish: what fails, and what happens to a task given up."""

    broker: str  # "Redis", "Kafka": for the log
    errors: tuple[type[BaseException], ...]  # what "the broker is away" raises
    left: str  # what becomes of a task not published before stopping
    log: logging.Logger
    most: float = 5.0  # longest pause between attempts


async def publish_until_stopped(
    send: Callable[[], Awaitable[None]],
    what: str,
    stop: asyncio.Event,
    policy: RetryPolicy,
    watch: BrokerWatch | None = None,
) -> bool:
    """Publish, retrying while the broker restarts: an answer is not thrown away.

    A worker told to stop gives up GIVE_UP_AFTER_STOP_S later and returns False;
    the task is then left unacknowledged and redone elsewhere (a redelivery,
    never a loss). With a `watch`, a retry goes out the moment the broker is
    back rather than up to a backoff later.
    """
    backoff: Backoff | None = None  # made on the first failure: nothing per answer that goes out
    stopping_since: float | None = None
    attempt = 0
    while True:
        try:
            await send()
            if attempt:
                policy.log.info("%s published after %d retries", what, attempt)
            return True
        except policy.errors as exc:
            if stop.is_set():
                stopping_since = stopping_since or time.monotonic()
                if time.monotonic() - stopping_since > GIVE_UP_AFTER_STOP_S:
                    policy.log.warning("%s not published before stopping (%s); %s", what, exc, policy.left)
                    return False
            attempt += 1
            policy.log.log(logging.WARNING if attempt == 1 else logging.DEBUG,
                           "%s: cannot publish (%s); retrying until %s takes it", what,
                           exc or type(exc).__name__, policy.broker)
            backoff = backoff or Backoff(most=policy.most)
            if watch is None or watch.reachable:
                await backoff.sleep()
            else:
                await watch.wait_up(backoff.next_delay())
