"""Batched log lines (sandbox/loglines.py) and the consumers' fetch room (sandbox/bus/delivery.py).

No timed assertions: what is checked is what has been written, before and after a flush.
"""

from __future__ import annotations

import asyncio
import io
import logging

from sandbox.bus.delivery import room
from sandbox.bus.waiters import ResponseWaiters
from sandbox import loglines
from sandbox.loglines import BatchedLines, StampCache


def logger_to(stream: io.StringIO, flush_s: float = 3600.0) -> tuple[logging.Logger, BatchedLines]:
    handler = BatchedLines(stream, flush_s=flush_s)
    handler.setFormatter(StampCache())
    log = logging.getLogger(f"test.loglines.{id(stream)}")
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.INFO)
    return log, handler


def test_same_format_as_logging_default() -> None:
    record = logging.LogRecord("sandbox.worker", logging.INFO, __file__, 1, "task %s received", ("t1",), None)
    assert StampCache().format(record) == logging.Formatter(StampCache()._fmt).format(record)


def test_without_a_loop_lines_go_out_at_once() -> None:
    out = io.StringIO()
    log, _ = logger_to(out)
    log.info("task t1 received")
    assert out.getvalue().endswith("INFO test.loglines.%d: task t1 received\n" % id(out))


def test_on_a_loop_info_lines_wait_for_one_write_and_a_warning_flushes_all_in_order() -> None:
    out = io.StringIO()
    log, handler = logger_to(out)

    async def main() -> None:
        log.info("task t1 received")
        log.info("task t1 done success in 0.1 ms")
        assert out.getvalue() == ""  # kept for one write
        log.warning("heartbeat failed")
        lines = out.getvalue().splitlines()
        assert [line.split(": ", 1)[1] for line in lines] == [
            "task t1 received", "task t1 done success in 0.1 ms", "heartbeat failed"]

    asyncio.run(main())


def test_kept_lines_are_written_by_the_timer_and_at_shutdown() -> None:
    out = io.StringIO()
    log, handler = logger_to(out, flush_s=0.01)

    async def main() -> None:
        log.info("task t2 received")
        await asyncio.sleep(0.05)  # the flush timer is due before this sleep ends
        assert "task t2 received" in out.getvalue()
        handler.flush_s = 3600.0
        log.info("task t2 done")

    asyncio.run(main())
    assert "task t2 done" not in out.getvalue()
    handler.flush()  # what logging.shutdown() does at exit
    assert "task t2 done" in out.getvalue()


def test_room_fetches_at_once_when_idle_and_after_a_short_wait_for_the_tasks_in_flight() -> None:
    async def main() -> None:
        assert await room(16, {}) == 16
        never = asyncio.get_running_loop().create_future()
        busy = {i: asyncio.ensure_future(never) for i in range(4)}
        assert await room(16, busy) == 12  # still in flight after the short wait: the free slots are fetched
        full = {i: asyncio.ensure_future(never) for i in range(16)}
        assert await room(16, full) == 0
        never.cancel()

        inflight: dict[int, asyncio.Future[None]] = {}
        for i in range(3):  # as a consumer's done callbacks free the slots
            task = inflight[i] = asyncio.ensure_future(asyncio.sleep(0))
            task.add_done_callback(lambda _t, i=i: inflight.pop(i, None))
        assert await room(16, inflight) == 16  # they finished within the wait: the whole batch is free

    asyncio.run(main())


def test_discard_forgets_the_job_ids_of_that_task_only() -> None:
    async def main() -> None:
        waiters = ResponseWaiters()
        waiters.add("t1", "job-1")
        waiters.add("t2", "job-2")
        waiters.discard("t1")
        assert waiters._by_job == {"job-2": "t2"}
        assert waiters._jobs_of == {"t2": ("job-2",)}

    asyncio.run(main())


def test_a_per_task_line_without_a_record_reads_as_logging_writes_it() -> None:
    out = io.StringIO()
    log, handler = logger_to(out)

    async def main() -> None:
        loglines.info(log, "task t3 received", handler)
        log.info("task %s received", "t3")
        handler.flush()

    asyncio.run(main())
    fast, slow = out.getvalue().splitlines()
    assert fast.split(" ", 2)[2] == slow.split(" ", 2)[2] == f"INFO {log.name}: task t3 received"
    assert len(fast) == len(slow)  # the same date and time layout in front


def test_a_per_task_line_reaches_every_other_handler_too() -> None:
    out, seen = io.StringIO(), io.StringIO()
    log, handler = logger_to(out)
    other = logging.StreamHandler(seen)
    log.addHandler(other)
    try:
        loglines.info(log, "task t4 done success in 0.1 ms", handler)
    finally:
        log.removeHandler(other)
    assert seen.getvalue() == "task t4 done success in 0.1 ms\n"
    assert out.getvalue().endswith(": task t4 done success in 0.1 ms\n")


def test_a_per_task_line_below_the_level_is_not_written() -> None:
    out = io.StringIO()
    log, handler = logger_to(out)
    log.setLevel(logging.WARNING)
    loglines.info(log, "task t5 received", handler)
    handler.flush()
    assert out.getvalue() == ""
