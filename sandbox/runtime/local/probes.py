"""Health probes that need no broker client: raw PING / Kafka Metadata, HTTP GET."""

from __future__ import annotations

import asyncio
import struct

import httpx

from sandbox.brokers.kafka import kafka_metadata
from sandbox.brokers.redis_server import redis_ping

HEALTH_PATH = "/api/v1/health"


async def broker_answers(backend: str, address: str, timeout: float = 1.5) -> bool:
    """Redis answers PING / Kafka answers a Metadata request naming a controller."""
    try:
        if backend == "redis":
            return await redis_ping(address, timeout)
        for node in address.split(","):  # a cluster answers while any node does
            if await _kafka_answers(node.strip(), timeout):
                return True
        return False
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, struct.error, ValueError, IndexError):
        return False


async def _kafka_answers(address: str, timeout: float) -> bool:
    try:
        meta = await kafka_metadata(address, timeout)
        return bool(meta["brokers"]) and meta["controller_id"] >= 0
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, struct.error, ValueError, IndexError):
        return False


async def api_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.get(f"http://{host}:{port}{HEALTH_PATH}")
        return response.status_code == 200
    except httpx.HTTPError:
        return False
