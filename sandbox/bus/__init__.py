"""Buses: one interface (base.Bus), two backends (redis/, kafka/); make_bus() picks one."""

from __future__ import annotations

from sandbox.bus.base import (
    Bus,
    BusError,
    BusUnavailable,
    ConsumerInfo,
    DeadLetter,
    Handler,
    MessageTooLarge,
    QueueStats,
    RequestTimeout,
    TapMessage,
)
from sandbox.bus.tap import describe_message
from sandbox.config import Settings

__all__ = [
    "Bus",
    "BusError",
    "BusUnavailable",
    "ConsumerInfo",
    "DeadLetter",
    "Handler",
    "MessageTooLarge",
    "QueueStats",
    "RequestTimeout",
    "TapMessage",
    "describe_message",
    "make_bus",
]


def make_bus(settings: Settings, backend: str | None = None) -> Bus:
    """The bus for a backend (default: the configured QUEUE_BACKEND), not yet connected."""
    backend = backend or settings.queue_backend
    if backend == "kafka":
        try:
            from sandbox.bus.kafka.bus import KafkaBus
        except ImportError as exc:  # aiokafka is the [kafka] extra
            raise BusError(f"the Kafka backend needs aiokafka: pip install 'laddr-sandbox[kafka]' ({exc})") from None
        return KafkaBus(settings)
    from sandbox.bus.redis.bus import RedisBus

    return RedisBus(settings)
