"""Settings from .env and the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.config import ConfigError, load_settings, mask, read_env_file, write_env


def test_the_guides_env_file_is_read(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(
        "# Message Broker Configuration (Kafka)\nKAFKA_BOOTSTRAP=kafka:9092\nQUEUE_BACKEND=kafka\n\n"
        "# Previous Redis configuration (commented out)\n# REDIS_URL=redis://redis:6379/0\n# QUEUE_BACKEND=redis\n"
    )
    settings = load_settings(env, environ={})
    assert settings.queue_backend == "kafka" and settings.kafka_bootstrap == "kafka:9092"
    assert settings.broker_address == "kafka:9092"


def test_the_environment_wins_over_the_file(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("QUEUE_BACKEND=kafka\n")
    settings = load_settings(env, environ={"QUEUE_BACKEND": "redis", "REDIS_URL": "redis://127.0.0.1:6379/0"})
    assert settings.queue_backend == "redis" and settings.broker_address == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize(
    "text, words",
    [
        ("QUEUE_BACKEND=rabbit\n", "QUEUE_BACKEND must be one of redis, kafka"),
        ("this line is not an assignment\n", ":1: malformed line"),
        ("OK=1\nKAFKA_PARTITIONS=many\n", "KAFKA_PARTITIONS must be a whole number"),
        ("KAFKA_PARTITIONS=0\n", "between 1 and 1000"),
        ("REDIS_URL=localhost:6379\n", "REDIS_URL must start with redis://"),
        ("KAFKA_BOOTSTRAP=kafka\n", "KAFKA_BOOTSTRAP must be host:port"),
    ],
)
def test_a_bad_env_file_is_one_clear_error(tmp_path: Path, text: str, words: str) -> None:
    env = tmp_path / ".env"
    env.write_text(text)
    with pytest.raises(ConfigError, match=words):
        load_settings(env, environ={})


def test_write_env_changes_keys_and_keeps_the_rest(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("# my notes\nQUEUE_BACKEND=redis\nOTHER=keep\n")
    write_env(env, {"QUEUE_BACKEND": "kafka", "KAFKA_BOOTSTRAP": "127.0.0.1:9092", "OTHER": None})
    text = env.read_text()
    assert "# my notes" in text and "OTHER" not in text
    assert read_env_file(env) == {"QUEUE_BACKEND": "kafka", "KAFKA_BOOTSTRAP": "127.0.0.1:9092"}


def test_write_env_refuses_to_rewrite_a_file_it_cannot_parse(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("garbage line\n")
    with pytest.raises(ConfigError):
        write_env(env, {"QUEUE_BACKEND": "kafka"})
    assert env.read_text() == "garbage line\n"


@pytest.mark.parametrize(
    "key, value, shown",
    [
        ("KAFKA_SASL_PASSWORD", "hunter2", "****"),
        ("LADDR_API_KEY", "abc", "****"),
        ("REDIS_URL", "redis://user:pw@host:6379/0", "redis://****@host:6379/0"),
        ("REDIS_URL", "redis://host:6379/0", "redis://host:6379/0"),
    ],
)
def test_secrets_are_masked(key: str, value: str, shown: str) -> None:
    assert mask(key, value) == shown


@pytest.mark.parametrize(
    "key, value",
    [
        ("KAFKA_BOOTSTRAP", ":::"),
        ("KAFKA_BOOTSTRAP", "127.0.0.1:notaport"),
        ("KAFKA_BOOTSTRAP", "127.0.0.1:70000"),
        ("REDIS_URL", "redis://127.0.0.1:notaport/0"),
        ("SCALE_RESEARCHER_WORKER", "-3"),
        ("SCALE_SUMMARIZER_WORKER", "many"),
        ("KAFKA_BROKERS", "0"),
        ("KAFKA_BROKERS", "6"),
        ("KAFKA_BROKERS", "three"),
    ],
)
def test_bad_addresses_and_counts_are_refused_naming_the_key(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load_settings(environ={key: value, "LADDR_ENV_FILE": ""})


def test_kafka_brokers_defaults_to_one_and_takes_1_to_5() -> None:
    assert load_settings(environ={"LADDR_ENV_FILE": ""}).kafka_brokers == 1
    assert load_settings(environ={"KAFKA_BROKERS": "3", "LADDR_ENV_FILE": ""}).kafka_brokers == 3


def test_good_addresses_pass() -> None:
    settings = load_settings(environ={"KAFKA_BOOTSTRAP": "[::1]:9092,kafka:29092", "REDIS_URL": "redis://h:1/0"})
    assert settings.kafka_bootstrap == "[::1]:9092,kafka:29092" and settings.redis_url == "redis://h:1/0"


