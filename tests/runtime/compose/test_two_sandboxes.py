"""Two sandboxes on one Docker engine: each folder's Compose project is its own.

Two temp folders each run the Redis stack at once (real engine, local images);
each sees, scales and logs only its own containers; taking one down (even with
its compose .env gone) leaves the other answering; a third folder with no stack
detects none and its `down` touches nothing; a name pinned to another folder's
project is refused, not taken down.
"""

from __future__ import annotations

import asyncio

import pytest

from sandbox.brokers.ports import free_ports
from sandbox.config import Settings
from sandbox.runtime import detect_running
from sandbox.runtime.base import RuntimeFailure
from sandbox.runtime.compose.config import ROOT_LABEL
from sandbox.runtime.compose.images import ensure_images
from tests.runtime.compose.test_compose_stack import need_engine, run, runtime_for

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def local_images() -> dict[str, str]:
    need_engine()
    return ensure_images(log=lambda line: None)


def folder_env(local_images: dict[str, str]) -> dict[str, str]:
    api, redis = free_ports(2)
    return {"COMPOSE_PROFILES": "", "API_HOST_PORT": str(api), "REDIS_HOST_PORT": str(redis), **local_images}


@pytest.fixture(scope="module")
async def two(local_images, tmp_path_factory):
    """Two sandboxes, both named `sandbox` (same basename, different folders), both up on Redis."""
    tmp = tmp_path_factory.mktemp("two-sandboxes")
    first = runtime_for(tmp / "a", "sandbox", **folder_env(local_images))
    second = runtime_for(tmp / "b", "sandbox", **folder_env(local_images))
    try:
        await asyncio.gather(first.up("redis"), second.up("redis"))
        yield first, second
    finally:
        for rt in (first, second):
            try:
                await rt.down()
            except RuntimeFailure:
                pass


async def test_each_folder_has_its_own_project_and_sees_only_its_own_containers(two) -> None:
    first, second = two
    assert first.project != second.project
    assert first.project.startswith("sandbox-") and second.project.startswith("sandbox-")
    for rt in two:
        containers = await rt._containers()
        assert containers and {c.labels[ROOT_LABEL] for c in containers} == {str(rt.config.root)}
        assert {c.labels["com.docker.compose.project"] for c in containers} == {rt.project}
    ids = [{c.id for c in await rt._containers()} for rt in two]
    assert not ids[0] & ids[1]
    for rt in two:
        assert (await run(rt, "researcher"))["status"] == "success"


async def test_scaling_one_leaves_the_other_as_it_was(two) -> None:
    first, second = two
    await first.scale("researcher_worker", 2)
    counts = [next(s for s in await rt.services() if s.name == "researcher_worker").replicas_label for rt in two]
    assert counts == ["2/2", "1/1"]
    logs = [line async for line in second.logs("researcher_worker", tail=50)]
    assert logs and {ln.replica for ln in logs} == {"researcher_worker-1"}


async def test_a_folder_without_a_stack_detects_none_and_its_down_touches_nothing(two, tmp_path, monkeypatch) -> None:
    first, second = two
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    assert detect_running(Settings(env_file=empty / ".env")) is None
    said: list[str] = []
    await runtime_for(tmp_path, "empty").down(said.append)
    assert said == [f"no compose stack of this folder here (project {runtime_for(tmp_path, 'empty').project})"]
    for rt in two:
        assert await rt.current_backend() == "redis"


async def test_a_project_name_pinned_to_another_folders_stack_is_refused(two, tmp_path, monkeypatch) -> None:
    first, _ = two
    monkeypatch.setenv("LADDR_COMPOSE_PROJECT", first.project)
    intruder = runtime_for(tmp_path, "intruder")
    assert intruder.project == first.project
    with pytest.raises(RuntimeFailure, match=rf"also runs containers of {first.config.root}: not touching it"):
        await intruder.down()
    assert await first.current_backend() == "redis"  # and the intruder sees none of them
    assert await intruder._containers() == []


async def test_taking_one_down_without_its_env_file_leaves_the_other_answering(two) -> None:
    first, second = two
    volumes_before = {v for c in await second._containers() for v in _volumes(c)}
    first.env_file.unlink()  # take down works with or without the compose .env
    said: list[str] = []
    await first.down(said.append)
    assert any(line.startswith(f"taking down the compose project {first.project}: ") for line in said), said
    assert await first._containers() == [] and await first.current_backend() is None
    assert await second.current_backend() == "redis"
    assert {v for c in await second._containers() for v in _volumes(c)} == volumes_before
    assert (await run(second, "writer"))["status"] == "success"


def _volumes(container) -> list[str]:
    return [m["Name"] for m in container.attrs.get("Mounts") or [] if m.get("Type") == "volume"]
