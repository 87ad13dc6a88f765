"""collect() on a real broker: a trace never finishes without the sub-tasks sent before its answer."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sandbox.bus import Bus
from sandbox.protocol import SANDBOX_META, Response
from sandbox.trace import collect
from tests.procs import unique_agent


class AnswersWhileReading:
    """The real bus; between collect()'s history read and its look-up of stored answers, the root's
    worker sends a sub-task, it is answered and then the root: the moment a coordinator finishes."""

    def __init__(self, bus: Bus, root: str, coordinator: str, sub_agent: str):
        self.bus, self.root, self.coordinator, self.sub_agent = bus, root, coordinator, sub_agent
        self.sub_id: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.bus, name)

    async def dead_letters(self, limit: int = 100):  # type: ignore[no-untyped-def]
        if self.sub_id is None:
            sub = await self.bus.publish_task(self.sub_agent, {"q": "sub", SANDBOX_META: {"parent": self.root}})
            self.sub_id = sub.task_id
            await self.bus.publish_response(Response(task_id=sub.task_id, status="success", agent=self.sub_agent))
            await self.bus.publish_response(Response(task_id=self.root, status="success", agent=self.coordinator))
            deadline = time.monotonic() + 30
            while await self.bus.get_response(self.root) is None:  # stored: what collect() looks up next
                assert time.monotonic() < deadline, "the root's answer was never stored"
                await asyncio.sleep(0.05)
        return await self.bus.dead_letters(limit)


async def test_an_answer_found_after_the_history_read_brings_its_sub_tasks(bus: Bus) -> None:
    coordinator, sub_agent = unique_agent("coord"), unique_agent("sub")
    await bus.ensure_topology([coordinator, sub_agent], partitions=1)
    await bus.follow_responses()
    root = await bus.publish_task(coordinator, {"q": "root"})
    racing = AnswersWhileReading(bus, root.task_id, coordinator, sub_agent)

    trace = await collect(racing, root.task_id, [], None)  # type: ignore[arg-type]

    assert racing.sub_id is not None and trace.root.response is not None
    assert trace.finished
    assert [(n.task_id, n.agent, n.status) for n in trace.root.children] == [(racing.sub_id, sub_agent, "success")]
