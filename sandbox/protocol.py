"""Messages and every name on the wire, compatible with Laddr 0.9.x.

Both brokers carry the same JSON documents; only the places differ (Redis
streams/keys vs Kafka topics). Decoding is strict about what Laddr requires and
lenient about extra fields, so a real Laddr client or worker interoperates.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

AGENTS: tuple[str, ...] = ("coordinator", "researcher", "analyzer", "writer", "validator")
BACKENDS: tuple[str, ...] = ("redis", "kafka")


def other_backend(backend: str) -> str:
    """The broker a switch goes to: Kafka from Redis, Redis from Kafka."""
    return "kafka" if backend == "redis" else "redis"


# Agent names become parts of stream keys and topic names: keep them to what
# Kafka allows in a topic name and no dots (a dot would split the namespace).
AGENT_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")

# --- Redis names -------------------------------------------------------------
REDIS_TASKS_PREFIX = "laddr:tasks:"
REDIS_RESPONSE_PREFIX = "laddr:response:"
REDIS_RESPONSE_TTL_S = 300
REDIS_REGISTRY = "laddr:agents:registry"
REDIS_CANCEL_PREFIX = "laddr:cancel:"
REDIS_DLQ = "laddr:dlq"
# Not part of Laddr: a capped copy of every response so that `watch --last N`
# can replay responses (pub/sub keeps no history).
REDIS_RESPONSES_STREAM = "laddr:responses"

# --- Kafka names -------------------------------------------------------------
KAFKA_TASKS_PREFIX = "laddr.tasks."
KAFKA_RESPONSES = "laddr.responses"
KAFKA_DLQ = "laddr.dlq"
# Not part of Laddr (it keeps the registry in memory): a compacted topic so
# that the registry survives restarts of every process.
KAFKA_REGISTRY = "laddr.registry"

# The sandbox's own bookkeeping in a task's payload, which Laddr's client, worker and Agent ignore:
# {"parent": task id} on a sub-task (for `trace`), {"earlier_deliveries": N} on a requeued dead letter.
SANDBOX_META = "_laddr_sandbox"

# Laddr's Agent runs a task under the payload's prompt_id, else job_id, and puts both in its answer.
LADDR_JOB_KEYS = ("prompt_id", "job_id")


def redis_stream(agent: str) -> str:
    return f"{REDIS_TASKS_PREFIX}{agent}"


def redis_group(agent: str) -> str:
    return f"{agent}_workers"


def redis_response_key(task_id: str) -> str:
    return f"{REDIS_RESPONSE_PREFIX}{task_id}"


def kafka_topic(agent: str) -> str:
    return f"{KAFKA_TASKS_PREFIX}{agent}"


def kafka_group(agent: str) -> str:
    return f"laddr-{agent}-workers"


def expected_channels(backend: str, agents: tuple[str, ...] | list[str] = AGENTS) -> list[str]:
    """What the migration guide's verification step expects to see on the broker."""
    if backend == "kafka":
        return [kafka_topic(a) for a in agents] + [KAFKA_RESPONSES]
    return [redis_stream(a) for a in agents]


def agent_of_channel(channel: str) -> str | None:
    for prefix in (REDIS_TASKS_PREFIX, KAFKA_TASKS_PREFIX):
        if channel.startswith(prefix):
            return channel[len(prefix):]
    return None


def validate_agent_name(name: str) -> str:
    if not isinstance(name, str) or not AGENT_NAME_RE.match(name):
        raise ValueError(f"invalid agent name {name!r}: use letters, digits, '_' or '-' (at most 100)")
    return name


class DecodeError(ValueError):
    """A message on the wire that is not a valid Laddr message."""


def new_task_id() -> str:
    return str(uuid.uuid4())


@dataclass(slots=True)
class Task:
    agent_name: str
    payload: Any
    task_id: str = field(default_factory=new_task_id)
    created_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "agent_name": self.agent_name,
            "payload": self.payload,
            "created_at": self.created_at,
        }

    def encode(self) -> bytes:
        return orjson.dumps(self.to_dict())


@dataclass(slots=True)
class Response:
    task_id: str
    status: str  # "success" | "error"
    result: Any = None
    error: str | None = None
    created_at: float = field(default_factory=time.time)
    # Extras (allowed by Laddr, ignored by it): who answered and how long it took.
    agent: str | None = None
    worker_id: str | None = None
    duration_ms: float | None = None
    delivery_count: int | None = None
    # Laddr 0.9.6's Agent echoes the payload's prompt_id / job_id in its answer; on
    # Kafka that is all a key-less, task_id-less answer can be matched by.
    job_id: str | None = None
    # How a client matched it to its request: "task_id" (inside), "key" (Redis key or
    # channel) or "job_id" (a Laddr 0.9.6 Kafka answer). Not on the wire.
    matched_by: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "success"

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "task_id": self.task_id,
            "status": self.status,
            "result": self.result,
            "error": self.error,
            "created_at": self.created_at,
        }
        for extra in ("agent", "worker_id", "duration_ms", "delivery_count"):
            value = getattr(self, extra)
            if value is not None:
                doc[extra] = value
        return doc

    def encode(self) -> bytes:
        return orjson.dumps(self.to_dict())


def _load_object(raw: bytes | str) -> dict[str, Any]:
    try:
        doc = orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise DecodeError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise DecodeError(f"expected a JSON object, got {type(doc).__name__}")
    return doc


def decode_task(raw: bytes | str) -> Task:
    doc = _load_object(raw)
    task_id, agent = doc.get("task_id"), doc.get("agent_name")
    if not isinstance(task_id, str) or not task_id:
        raise DecodeError("task has no string 'task_id'")
    if not isinstance(agent, str) or not agent:
        raise DecodeError("task has no string 'agent_name'")
    if "payload" not in doc:
        raise DecodeError("task has no 'payload'")
    created = doc.get("created_at")
    if not isinstance(created, (int, float)) or isinstance(created, bool):
        created = time.time()
    return Task(agent_name=agent, payload=asked(doc["payload"], task_id), task_id=task_id, created_at=float(created))


def asked(payload: Any, task_id: Any) -> Any:
    """A task's payload without the job id the sandbox's clients add for Laddr's Agent (= the task id)."""
    if isinstance(payload, dict) and payload.get("job_id") == task_id:
        return {k: v for k, v in payload.items() if k != "job_id"}
    return payload


def job_id_of(doc: Any) -> str | None:
    """The id Laddr's Agent runs a task under (`prompt_id`, else `job_id`), which it echoes back."""
    if not isinstance(doc, dict):
        return None
    for key in LADDR_JOB_KEYS:
        value = doc.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def decode_response(raw: bytes | str, task_id: str | None = None) -> Response:
    """A response; `task_id` is where the place it came from names it (Redis key or channel),
    for Laddr workers, which publish their handler's result without one."""
    doc = _load_object(raw)
    inside = doc.get("task_id")
    job_id = job_id_of(doc)
    matched_by = "task_id"
    if isinstance(inside, str) and inside:
        task_id = inside
    elif task_id:
        matched_by = "key"
    elif job_id:
        matched_by = "job_id"
    else:
        raise DecodeError("response has no string 'task_id' (nor a job_id to match it by)")
    status = doc.get("status")
    if not isinstance(status, str):
        # Laddr workers publish whatever their handler returned; a document
        # without a status but with an error is an error, otherwise a result.
        status = "error" if doc.get("error") else "success"
    error = doc.get("error")
    created = doc.get("created_at")
    if not isinstance(created, (int, float)) or isinstance(created, bool):
        created = time.time()
    result = doc["result"] if "result" in doc else {k: v for k, v in doc.items() if k not in ("task_id", "status")}
    return Response(
        task_id=task_id or "",
        status=status,
        result=result,
        error=str(error) if error is not None else None,
        created_at=float(created),
        agent=doc.get("agent") if isinstance(doc.get("agent"), str) else None,
        worker_id=doc.get("worker_id") if isinstance(doc.get("worker_id"), str) else None,
        duration_ms=doc.get("duration_ms") if isinstance(doc.get("duration_ms"), (int, float)) else None,
        delivery_count=doc.get("delivery_count") if isinstance(doc.get("delivery_count"), int) else None,
        job_id=job_id,
        matched_by=matched_by,
    )


@dataclass(slots=True)
class AgentInfo:
    """One entry of the agent registry: Laddr's fields plus who sent the heartbeat."""

    name: str
    role: str = ""
    goal: str = ""
    tools: list[str] = field(default_factory=list)
    status: str = "active"
    last_heartbeat: float = 0.0
    worker_id: str | None = None

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {
            "role": self.role,
            "goal": self.goal,
            "tools": self.tools,
            "status": self.status,
            "last_heartbeat": self.last_heartbeat,
        }
        if self.worker_id:
            doc["worker_id"] = self.worker_id
        return orjson.dumps(doc)

    @classmethod
    def from_json(cls, name: str, raw: bytes | str) -> AgentInfo:
        doc = _load_object(raw)
        tools = doc.get("tools") or []
        return cls(
            name=name,
            role=str(doc.get("role") or ""),
            goal=str(doc.get("goal") or ""),
            tools=[str(t) for t in tools] if isinstance(tools, list) else [],
            status=str(doc.get("status") or "unknown"),
            last_heartbeat=float(doc.get("last_heartbeat") or 0.0),
            worker_id=doc.get("worker_id") if isinstance(doc.get("worker_id"), str) else None,
        )


def earlier_deliveries(payload: Any) -> int:
    """How often a requeued dead letter was delivered before its requeue (0 for any other task)."""
    meta = payload.get(SANDBOX_META) if isinstance(payload, dict) else None
    value = meta.get("earlier_deliveries") if isinstance(meta, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def without_earlier_deliveries(task: Task) -> Task:
    """The task as it was first sent: a handler does not see the count a requeue added."""
    payload = task.payload
    meta = payload.get(SANDBOX_META) if isinstance(payload, dict) else None
    if not isinstance(meta, dict) or "earlier_deliveries" not in meta:
        return task
    rest = {k: v for k, v in meta.items() if k != "earlier_deliveries"}
    cleaned = {k: v for k, v in payload.items() if k != SANDBOX_META} | ({SANDBOX_META: rest} if rest else {})
    return Task(agent_name=task.agent_name, payload=cleaned, task_id=task.task_id, created_at=task.created_at)


def with_earlier_deliveries(raw: bytes, count: int) -> bytes:
    """A dead task's bytes, carrying its delivery count so the count goes on after a requeue.

    Bytes that are not a task with an object payload are requeued as they are.
    """
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw
    payload = doc.get("payload") if isinstance(doc, dict) else None
    if not isinstance(payload, dict) or count <= 0:
        return raw
    meta = payload.get(SANDBOX_META)
    meta = dict(meta) if isinstance(meta, dict) else {}
    meta["earlier_deliveries"] = count
    doc["payload"] = {**payload, SANDBOX_META: meta}
    return orjson.dumps(doc)
