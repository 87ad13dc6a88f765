"""Matching answers to requests: one long-lived listener per client resolves the futures
of the requests in flight, by task id or, for Laddr 0.9.6 on Kafka, by the job id."""

from __future__ import annotations

import asyncio
from typing import Any

from sandbox.protocol import Response, job_id_of


def with_job_id(payload: Any, task_id: str, wanted: bool = True) -> Any:
    """The payload with `job_id` = task_id unless it names a job already (or not `wanted`).

    Laddr's Agent runs a task under its payload's prompt_id/job_id and echoes both in
    its answer; that is what lets a client match Laddr 0.9.6's Kafka answers, which
    carry no key and no task_id. Any other worker ignores the extra field.
    """
    if wanted and isinstance(payload, dict) and job_id_of(payload) is None:
        return {**payload, "job_id": task_id}
    return payload


async def wait_done(shared: asyncio.Future[Any], timeout: float) -> None:
    """Return once `shared` is done or `timeout` has passed, whichever comes first.

    The future may be shared (two clients of one task id): cancelling the caller leaves it alone.
    One private future and one timer: asyncio.timeout() + shield(), which do the same, cost a
    request about 6 us more (their objects and callbacks), a few percent of a client's CPU per task.
    """
    if shared.done():
        return
    loop = asyncio.get_running_loop()
    mine = loop.create_future()

    def wake(_: object = None) -> None:
        if not mine.done():
            mine.set_result(None)

    shared.add_done_callback(wake)
    timer = loop.call_later(timeout, wake)
    try:
        await mine
    finally:
        timer.cancel()
        shared.remove_done_callback(wake)


class ResponseWaiters:
    """Futures keyed by task_id, resolved by one long-lived response listener.

    A waiter may also be found by the job id its payload carries: Laddr 0.9.6's Kafka
    worker answers with neither key nor task_id, but its Agent echoes the job id.
    """

    def __init__(self) -> None:
        self._futures: dict[str, asyncio.Future[Response]] = {}
        self._by_job: dict[str, str] = {}  # job id -> task id
        self._jobs_of: dict[str, tuple[str, ...]] = {}  # task id -> its job ids (discard without a scan)

    def add(self, task_id: str, job_id: str | None = None) -> asyncio.Future[Response]:
        future = self._futures.get(task_id)
        if future is None or future.done():
            future = asyncio.get_running_loop().create_future()
            self._futures[task_id] = future
        if job_id:
            self._by_job[job_id] = task_id
            jobs = self._jobs_of.get(task_id, ())
            if job_id not in jobs:
                self._jobs_of[task_id] = (*jobs, job_id)
        return future

    def task_of(self, response: Response) -> str | None:
        """The task a response answers: its own id, else the one whose job id it echoes
        (the sandbox's clients make a task's job id its task id, unless the payload had one)."""
        if response.task_id:
            return response.task_id
        job = response.job_id or ""
        return self._by_job.get(job) or (job if job in self._futures else None)

    def waiting(self, task_id: str) -> bool:
        future = self._futures.get(task_id)
        return future is not None and not future.done()

    def discard(self, task_id: str) -> None:
        self._futures.pop(task_id, None)
        for job in self._jobs_of.pop(task_id, ()):
            if self._by_job.get(job) == task_id:
                del self._by_job[job]

    def ids(self) -> list[str]:
        return list(self._futures)

    def resolve(self, response: Response) -> bool:
        task_id = self.task_of(response)
        if task_id is None:  # names no task, echoes no job id we sent: not ours (the tap shows it)
            return False
        response.task_id = task_id
        future = self._futures.get(task_id)
        if future is None or future.done():
            return False
        future.set_result(response)
        return True

    def fail_all(self, error: BaseException) -> None:
        for future in self._futures.values():
            if not future.done():
                future.set_exception(error)
                future.exception()  # whoever waits sees it; nobody waiting is no error
        self._futures.clear()
