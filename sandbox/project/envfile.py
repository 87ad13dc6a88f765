"""The guide's `.env` changes, as text in -> text out (python-dotenv parses it).

Forward (to Kafka), the block of the guide replaces the active broker lines
(`REDIS_URL`, `QUEUE_BACKEND`, `KAFKA_BOOTSTRAP`) where the first of them was:

    # Message Broker Configuration (Kafka)
    KAFKA_BOOTSTRAP=kafka:9092
    QUEUE_BACKEND=kafka

    # Previous Redis configuration (commented out)
    # REDIS_URL=redis://redis:6379/0      <- the project's own REDIS_URL, if it had one
    # QUEUE_BACKEND=redis

A commented-out `# KAFKA_BOOTSTRAP=...` line is dropped (the key is now set). Every
other line stays byte for byte. Back (to Redis), the guide's rollback: `REDIS_URL`
and `QUEUE_BACKEND=redis` set, `KAFKA_BOOTSTRAP` commented out.
"""

from __future__ import annotations

import io
import re

from dotenv.parser import Binding, parse_stream

from .errors import ProjectError
from .kafka_services import KAFKA_BOOTSTRAP, REDIS_URL

BROKER_KEYS = ("REDIS_URL", "QUEUE_BACKEND", "KAFKA_BOOTSTRAP")
KAFKA_HEADER = "# Message Broker Configuration (Kafka)"
REDIS_HEADER = "# Previous Redis configuration (commented out)"
ROLLBACK_HEADER = "# Message Broker Configuration (Redis)"
KAFKA_COMMENTED = "# Kafka configuration (commented out)"
_COMMENTED = re.compile(r"^#\s*(?P<key>[A-Z_][A-Z0-9_]*)=(?P<value>\S*)\s*$")


def parse(text: str, name: str = ".env") -> list[Binding]:
    """The file's lines as python-dotenv sees them; a line it cannot parse is a ProjectError."""
    bindings = list(parse_stream(io.StringIO(text)))
    for b in bindings:
        if b.error:
            raise ProjectError(f"{name} line {b.original.line}: cannot parse {b.original.string.strip()!r} "
                               "(expected KEY=value)")
    return bindings


def values(text: str, name: str = ".env") -> dict[str, str | None]:
    return {b.key: b.value for b in parse(text, name) if b.key is not None}


def to_kafka(text: str, name: str = ".env") -> str:
    bindings = parse(text, name)
    current = {b.key: b.value for b in bindings if b.key is not None}
    if current.get("QUEUE_BACKEND") == "kafka" and current.get("KAFKA_BOOTSTRAP"):
        return text  # already on Kafka: the user's values stay
    redis_url = current.get("REDIS_URL") or REDIS_URL
    previous_backend = current.get("QUEUE_BACKEND") if current.get("QUEUE_BACKEND") not in (None, "", "kafka") else "redis"
    block = [KAFKA_HEADER, f"KAFKA_BOOTSTRAP={KAFKA_BOOTSTRAP}", "QUEUE_BACKEND=kafka", "",
             REDIS_HEADER, f"# REDIS_URL={redis_url}", f"# QUEUE_BACKEND={previous_backend}"]
    return _replace_broker_lines(text, bindings, block, drop_commented={"KAFKA_BOOTSTRAP"})


def to_redis(text: str, name: str = ".env") -> str:
    bindings = parse(text, name)
    current = {b.key: b.value for b in bindings if b.key is not None}
    if current.get("QUEUE_BACKEND", "redis") == "redis" and current.get("REDIS_URL") and not current.get("KAFKA_BOOTSTRAP"):
        return text
    # The forward step's own lines: its two headers and the Redis lines it kept commented out.
    drop: set[int] = set()
    kept: dict[str, str] = {}
    for i, b in enumerate(bindings):
        stripped = b.original.string.strip()
        if stripped == KAFKA_HEADER:
            drop.add(i)
        elif stripped == REDIS_HEADER:
            drop.add(i)
            for j in range(i + 1, len(bindings)):
                m = _COMMENTED.match(bindings[j].original.string.strip()) if bindings[j].key is None else None
                if not m:
                    break
                drop.add(j)
                kept.setdefault(m["key"], m["value"])
    redis_url = kept.get("REDIS_URL") or current.get("REDIS_URL") or REDIS_URL
    kafka = current.get("KAFKA_BOOTSTRAP") or KAFKA_BOOTSTRAP
    block = [ROLLBACK_HEADER, f"REDIS_URL={redis_url}", "QUEUE_BACKEND=redis", "",
             KAFKA_COMMENTED, f"# KAFKA_BOOTSTRAP={kafka}"]
    return _replace_broker_lines(text, bindings, block, drop_commented=set(), drop=drop)


def _replace_broker_lines(text: str, bindings: list[Binding], block: list[str], *,
                          drop_commented: set[str], drop: set[int] = frozenset()) -> str:
    nl = "\r\n" if "\r\n" in text else "\n"  # the file's own line ends
    out: list[str] = []
    inserted = False
    for i, b in enumerate(bindings):
        line = b.original.string
        if b.key in BROKER_KEYS:
            if not inserted:
                out.extend(f"{row}{nl}" for row in block)
                inserted = True
            continue
        if i in drop:
            continue
        if b.key is None:
            m = _COMMENTED.match(line.strip())
            if m and m["key"] in drop_commented:
                continue
        out.append(line)
    if not inserted:
        if out and not out[-1].endswith("\n"):
            out[-1] += nl
        if out and out[-1].strip():
            out.append(nl)
        out.extend(f"{row}{nl}" for row in block)
    return _collapse_blank_runs("".join(out), text)


def _collapse_blank_runs(new: str, old: str) -> str:
    """Dropping lines must not leave more consecutive blank lines than the file had."""
    longest = max([2, *(len(run) for run in re.findall(r"\n{2,}", old))])
    return re.sub(r"\n{%d,}" % (longest + 1), "\n" * longest, new)
