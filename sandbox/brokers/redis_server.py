"""Run a real redis-server in the foreground, and wait until it answers PING."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .errors import BrokerError
from .ports import ensure_port_free


def find_redis_server() -> str:
    path = shutil.which("redis-server")
    if not path:
        raise BrokerError("redis-server not found: apt-get install redis-server")
    return path


@dataclass
class RedisSpec:
    data_dir: Path
    port: int = 6379
    host: str = "127.0.0.1"
    check_ports: bool = True

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def prepare(self) -> tuple[list[str], dict[str, str]]:
        """Return (argv, env) of a foreground redis-server keeping its data in data_dir."""
        if self.check_ports:
            ensure_port_free(self.port, self.host, "Redis")
        server = find_redis_server()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            server,
            "--bind",
            self.host,
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir),
            # Durable enough for a sandbox: the AOF, fsynced once a second; no RDB snapshots.
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--protected-mode",
            "yes",
            "--daemonize",
            "no",  # the supervisor owns the process
            "--logfile",
            "",  # log to stdout
        ]
        return argv, dict(os.environ)


async def redis_ping(url: str, timeout: float = 2.0) -> bool:
    """True when the server at `url` answers PING with PONG (after AUTH if the URL has a password).

    Raw RESP over TCP, so this module needs no Redis client library.
    """
    u = urlsplit(url)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(u.hostname or "127.0.0.1", u.port or 6379), timeout)
    try:
        commands = []
        if u.password:
            auth = [unquote(u.username), unquote(u.password)] if u.username else [unquote(u.password)]
            commands.append(["AUTH", *auth])
        commands.append(["PING"])
        for cmd in commands:
            writer.write(
                f"*{len(cmd)}\r\n".encode()
                + b"".join(f"${len(a.encode())}\r\n".encode() + a.encode() + b"\r\n" for a in cmd)
            )
        await writer.drain()
        replies = [await asyncio.wait_for(reader.readline(), timeout) for _ in commands]
        return replies[-1].startswith(b"+PONG")  # "-LOADING" while the AOF is read
    finally:
        writer.close()


async def wait_redis_ready(url: str, timeout: float = 30.0) -> None:
    """Poll until Redis at `url` answers PING, else BrokerError after `timeout` seconds."""
    start = time.monotonic()
    error: object = "no answer"
    while time.monotonic() - start < timeout:
        try:
            if await redis_ping(url):
                return
            error = "not PONG yet (loading?)"
        except (OSError, TimeoutError) as e:
            error = e
        await asyncio.sleep(0.05)
    raise BrokerError(f"Redis at {url} not ready after {timeout:.0f}s ({error}): see its log")
