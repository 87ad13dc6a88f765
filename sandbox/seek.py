"""Where a tail starts: `--from 10m` / `--from 2026-12-02T10:00` (a time) or `--offset P:O` (a position)."""

from __future__ import annotations

import re
import time
from datetime import datetime

AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)$")
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
KAFKA_OFFSET = re.compile(r"^\d+:\d+$")
REDIS_ID = re.compile(r"^\d+(-\d+)?$")


def parse_from(text: str, now: float | None = None) -> float:
    """Epoch seconds from "10m" (ago) or an ISO time (local unless it names a zone); ValueError otherwise."""
    text = text.strip()
    now = time.time() if now is None else now
    if match := AGO.match(text):
        return now - float(match.group(1)) * UNIT_S[match.group(2)]
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ValueError(f"--from {text!r}: give a duration ago (30s, 10m, 2h, 1d) or a time "
                         "(2026-12-02T10:00)") from None


def parse_offset(text: str, backend: str) -> str:
    """A Kafka "partition:offset" or a Redis stream id ("1764000000000-0"); ValueError otherwise."""
    text = text.strip()
    if backend == "kafka" and KAFKA_OFFSET.match(text):
        return text
    if backend == "redis" and REDIS_ID.match(text):
        return text if "-" in text else f"{text}-0"
    shape = "PARTITION:OFFSET (e.g. 0:42)" if backend == "kafka" else "a stream id (e.g. 1764000000000-0)"
    raise ValueError(f"--offset {text!r}: on {backend} give {shape}")
