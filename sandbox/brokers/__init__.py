"""Real broker launchers: a pinned Apache Kafka (KRaft, one node or a cluster) from Maven Central jars, and redis-server.

Used by the local runtime (argv/env for its process supervisor) and by the tests
and benchmarks (`sandbox.brokers.testing`). Speaks no broker client library.
"""

from __future__ import annotations

import importlib

# Names load lazily (PEP 562) so `python -m sandbox.brokers.kafka_jars` does not
# import its own module twice.
_EXPORTS = {
    "BrokerError": "errors",
    "KafkaSpec": "kafka",
    "find_java": "kafka",
    "kafka_metadata": "kafka_wire",
    "kafka_quorum": "kafka_wire",
    "KafkaClusterSpec": "kafka_cluster",
    "kafka_cluster_status": "kafka_cluster",
    "wait_kafka_cluster_ready": "kafka_cluster",
    "topics_argv": "kafka",
    "wait_kafka_ready": "kafka",
    "cache_root": "kafka_jars",
    "ensure_kafka_jars": "kafka_jars",
    "jars_dir": "kafka_jars",
    "kafka_version": "kafka_jars",
    "ensure_port_free": "ports",
    "free_port": "ports",
    "free_ports": "ports",
    "port_is_free": "ports",
    "RedisSpec": "redis_server",
    "find_redis_server": "redis_server",
    "redis_ping": "redis_server",
    "wait_redis_ready": "redis_server",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
