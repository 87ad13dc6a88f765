"""Real brokers for the whole session: one redis-server and one Apache Kafka (KRaft).

Nothing here is mocked. A broker that cannot start fails the tests that need
it with the broker's own last lines; it never skips them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import pytest

from sandbox.brokers.testing import running_kafka, running_redis
from sandbox.bus import Bus, make_bus
from sandbox.config import Settings

BACKENDS = ["redis", "kafka"]


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with running_redis() as url:
        yield url


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    with running_kafka() as bootstrap:
        yield bootstrap


def settings_for(backend: str, request: pytest.FixtureRequest, **overrides: object) -> Settings:
    """Settings pointing at the session's real broker for a backend."""
    base = Settings(queue_backend=backend, env_file=None)
    if backend == "redis":
        base = replace(base, redis_url=request.getfixturevalue("redis_url"))
    else:
        base = replace(base, kafka_bootstrap=request.getfixturevalue("kafka_bootstrap"))
    return replace(base, **overrides)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def settings(backend: str, request: pytest.FixtureRequest) -> Settings:
    return settings_for(backend, request, claim_idle_ms=1000, heartbeat_s=0.5)


@pytest.fixture
async def bus(settings: Settings) -> AsyncIterator[Bus]:
    bus = make_bus(settings)
    await bus.connect()
    try:
        yield bus
    finally:
        await bus.close()
