"""Two local sandboxes at once, in two folders (each with its own .laddr-sandbox/):
taking one down leaves the other answering, and each folder detects only its own."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sandbox.bus import make_bus
from sandbox.config import Settings
from sandbox.runtime import detect_running
from sandbox.runtime.local import LocalRuntime
from tests.runtime.local.test_local_runtime import LEAKY_ENV, finish

pytestmark = pytest.mark.timeout(300)


async def answers(runtime: LocalRuntime) -> bool:
    async with make_bus(runtime.bus_settings("redis")) as bus:
        return (await bus.request("researcher", {"query": str(runtime.project_dir)}, timeout=20)).ok


async def test_local_beside_local_taking_one_down_leaves_the_other_answering(tmp_path: Path, monkeypatch) -> None:
    for key in LEAKY_ENV:
        monkeypatch.delenv(key, raising=False)
    folders = [tmp_path / "one" / "sandbox", tmp_path / "two" / "sandbox"]
    runtimes = []
    for folder in folders:
        folder.mkdir(parents=True)
        runtimes.append(LocalRuntime(Settings(env_file=folder / ".env"), cwd=folder))
    first, second = runtimes
    try:
        await asyncio.gather(first.up("redis"), second.up("redis"))
        assert first.dir.root != second.dir.root
        assert await answers(first) and await answers(second)
        for folder, runtime in zip(folders, runtimes):
            monkeypatch.chdir(folder)
            found = detect_running(Settings(env_file=folder / ".env"))
            assert isinstance(found, LocalRuntime) and found.dir.root == runtime.dir.root
        await first.down()
        assert await first.current_backend() is None
        monkeypatch.chdir(folders[0])
        assert detect_running(Settings(env_file=folders[0] / ".env")) is None
        assert await second.current_backend() == "redis" and await answers(second)
    finally:
        await asyncio.gather(finish(first), finish(second))
