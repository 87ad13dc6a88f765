"""A service's log lines from its replicas' files: the current `<replica>.log`, or the `.log.1` kept
when a replica was started again (a scale down and up, a backend switch)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from sandbox.runtime.base import LogLine
from sandbox.runtime.local.logfollow import follow_files
from sandbox.runtime.local.statedir import StateDir
from sandbox.runtime.local.status import replicas_of
from sandbox.runtime.local.supervisor_conf import configured_programs

ROTATED = ".log.1"


def service_lines(state: StateDir, service: str, *, tail: int, follow: bool) -> AsyncIterator[LogLine]:
    def sources() -> dict[str, Path]:
        names = [n for _, n in replicas_of(service, configured_programs(state))]
        if not names and not follow:  # stack down: the last run's files are still worth reading
            names = [n for _, n in replicas_of(service, [p.stem for p in state.logs.glob("*.log")])]
        return {n: state.log_file(n) for n in names}

    return _lines(service, sources, tail, follow)


def rotated_lines(state: StateDir, service: str, *, tail: int) -> AsyncIterator[LogLine]:
    def sources() -> dict[str, Path]:
        kept = [p.name[: -len(ROTATED)] for p in state.logs.glob(f"*{ROTATED}")]
        return {n: state.logs / f"{n}{ROTATED}" for _, n in replicas_of(service, kept)}

    return _lines(service, sources, tail, False)


async def _lines(service: str, sources, tail: int, follow: bool) -> AsyncIterator[LogLine]:  # type: ignore[no-untyped-def]
    async for tag, text, ts in follow_files(sources, tail=tail, follow=follow):
        yield LogLine(service=service, replica=tag, text=text, timestamp=ts)
