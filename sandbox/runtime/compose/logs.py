"""Every replica's log lines, one thread per container stream, tagged by replica.

The SDK's log streams block, so each replica is pumped by a thread into one
asyncio queue. Following re-attaches to replicas that start or restart,
from the last line passed on, so nothing is repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any

from sandbox.runtime.base import LogLine
from sandbox.runtime.compose.engine import Engine, docker_time, service_of
from sandbox.runtime.compose.nodes import members, replica_tag

WATCH_EVERY_S = 1.0


async def _containers(engine: Engine, service: str, all_: bool = True) -> list[Any]:
    """The containers behind a shown service (`kafka`: every node of a cluster)."""
    return [c for s in members(service) for c in await engine.containers(s, all_)]


async def service_logs(engine: Engine, service: str, *, tail: int, follow: bool) -> AsyncIterator[LogLine]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[LogLine] = asyncio.Queue()
    streams: dict[str, Any] = {}  # container id -> open log stream
    last: dict[str, str] = {}  # container id -> docker timestamp of the last line passed on
    stop = threading.Event()

    def pump(container: Any, since: str | None) -> None:
        name = replica_tag(service_of(container), container)
        kwargs: dict[str, Any] = {"stream": True, "follow": follow, "timestamps": True}
        if since:
            kwargs["since"] = docker_time(since)
        else:
            kwargs["tail"] = tail
        try:
            stream = container.logs(**kwargs)
            streams[container.id] = stream
            for raw in stream:
                if stop.is_set():
                    break
                for row in raw.decode(errors="replace").splitlines():
                    stamp, _, text = row.partition(" ")
                    if since and stamp <= last.get(container.id, ""):
                        continue  # `since` is inclusive: do not repeat the last line
                    last[container.id] = stamp
                    loop.call_soon_threadsafe(queue.put_nowait, LogLine(service, name, text, docker_time(stamp)))
        except Exception:  # noqa: BLE001, S110 - the container went away mid-stream: the watcher re-attaches
            pass
        finally:
            streams.pop(container.id, None)

    if not follow:
        containers = await _containers(engine, service)
        threads = [threading.Thread(target=pump, args=(c, None), daemon=True) for c in containers]
        for t in threads:
            t.start()
        await asyncio.to_thread(lambda: [t.join() for t in threads])
        lines = []
        while not queue.empty():
            lines.append(queue.get_nowait())
        for line in sorted(lines, key=lambda ln: ln.timestamp or 0.0):
            yield line
        return

    async def watch() -> None:
        # Attach to each running replica; a replica that stopped and runs again, or a new one, is re-attached.
        while not stop.is_set():
            for c in await _containers(engine, service, all_=False):
                if c.id not in streams and c.status == "running":
                    streams[c.id] = None  # claimed before the thread opens it
                    threading.Thread(target=pump, args=(c, last.get(c.id)), daemon=True).start()
            await asyncio.sleep(WATCH_EVERY_S)

    watcher = asyncio.create_task(watch())
    try:
        while True:
            yield await queue.get()
    finally:
        stop.set()
        watcher.cancel()
        for stream in list(streams.values()):
            with contextlib.suppress(Exception):
                stream.close()
