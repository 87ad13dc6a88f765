"""A real redis-server started the way the local runtime starts it (no mocks)."""

from __future__ import annotations

import socket

import pytest
import redis.asyncio as aioredis

from sandbox.brokers import BrokerError, RedisSpec, free_port, redis_ping, wait_redis_ready
from sandbox.brokers.testing import running_redis


async def test_redis_starts_and_pings():
    with running_redis() as url:
        assert await redis_ping(url)
        client = aioredis.from_url(url, decode_responses=True)
        try:
            assert await client.ping()
            assert await client.config_get("appendonly") == {"appendonly": "yes"}
            assert await client.config_get("appendfsync") == {"appendfsync": "everysec"}
            assert await client.config_get("save") == {"save": ""}
            assert await client.config_get("protected-mode") == {"protected-mode": "yes"}
        finally:
            await client.aclose()


def test_redis_is_stopped_and_cleaned_up_after_an_error():
    with pytest.raises(RuntimeError, match="boom"), running_redis() as url:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        raise RuntimeError("boom")
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # nobody listens any more


def test_argv_runs_in_the_foreground_with_the_data_dir(tmp_path):
    argv, _ = RedisSpec(tmp_path, port=free_port()).prepare()
    assert argv[argv.index("--daemonize") + 1] == "no"
    assert argv[argv.index("--dir") + 1] == str(tmp_path.resolve())
    assert argv[argv.index("--save") + 1] == ""
    assert argv[argv.index("--bind") + 1] == "127.0.0.1"


def test_taken_port_is_a_clear_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(BrokerError, match=f"port {port} on 127.0.0.1 is taken by another program"):
            RedisSpec(tmp_path, port=port).prepare()


def test_missing_redis_server_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BrokerError, match="redis-server not found: apt-get install redis-server"):
        RedisSpec(tmp_path, port=free_port()).prepare()


async def test_wait_gives_up_on_a_silent_port():
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(BrokerError, match="not ready after 1s"):
        await wait_redis_ready(url, timeout=1)
