"""The guide's docker-compose.yml changes, on the round-trip YAML of the project's file.

To Kafka: ZooKeeper (2181), Kafka (9092 clients, 29092 between brokers, 9101
metrics), a one-shot `kafka-init` that makes the guide's topics for the project's
agents, and Kafka UI (8080) are added after the `redis` service (which stays, for
the rollback); the api and every `<agent>_worker` get `QUEUE_BACKEND=kafka` and
`KAFKA_BOOTSTRAP=kafka:9092` and wait for Kafka instead of Redis. Back to Redis:
the Kafka services go, `redis` comes back if it is gone, the apps wait for it.

A `depends_on` naming a service the file does not define (`laddr init` 0.9.6
writes `postgres` into every worker but no postgres service) would make the file
fail `docker compose config`; the apps' such entries are dropped, and said so.
"""

from __future__ import annotations

from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from . import kafka_services as ks
from .errors import ProjectError
from .yamlio import Document, dump_fragment, is_null, move_comment_between, move_trailing_comments, new_map, own_value

APP_SERVICES = ("api",)


def services_of(doc: Document) -> CommentedMap:
    data = doc.data
    if not isinstance(data, CommentedMap) or not isinstance(data.get("services"), CommentedMap):
        raise ProjectError(f"{doc.name}: no `services:` mapping (not a Compose file)")
    return data["services"]


def app_services(services: CommentedMap) -> list[str]:
    """The api and the workers: `api`, `<name>_worker`, or anything running `-m agents.<name>`."""
    return [name for name, svc in services.items() if _is_app(name, svc)]


def _is_app(name: str, svc: Any) -> bool:
    if not isinstance(svc, CommentedMap):
        return False
    command = svc.get("command")
    command = " ".join(map(str, command)) if isinstance(command, CommentedSeq) else str(command or "")
    return name in APP_SERVICES or name.endswith("_worker") or "-m agents." in command


def to_kafka(text: str, agents: list[str], name: str = "docker-compose.yml") -> tuple[str, list[str]]:
    doc = Document(text, name)
    services = services_of(doc)
    notes: list[str] = []
    added = ks.kafka_services(agents)
    at = _position_after(services, "redis")
    before = services[list(services)[at - 1]] if at else None
    last_added = None
    for svc_name, svc in added.items():
        if svc_name in services:
            if dump_fragment(services[svc_name]) != dump_fragment(svc):
                notes.append(f"kept the project's own {svc_name} service as it is")
            continue
        services.insert(at, svc_name, svc)
        last_added = svc
        at += 1
    if before is not None and last_added is not None:
        move_trailing_comments(before, last_added)
    for app in app_services(services):
        svc = services[app]
        set_environment(svc, ks.app_environment("kafka"), remove=())
        notes += set_depends(services, app, ks.app_depends("kafka"), drop={"redis"})
    return _dumped(doc, text), notes


def to_redis(text: str, name: str = "docker-compose.yml") -> tuple[str, list[str]]:
    doc = Document(text, name)
    services = services_of(doc)
    notes: list[str] = []
    at = None
    for svc_name in ks.KAFKA_SERVICE_NAMES:
        if svc_name in services:
            at = list(services).index(svc_name) if at is None else at
            del services[svc_name]
    if "redis" not in services:
        services.insert(at or 0, "redis", ks.redis_service())
        notes.append("added a redis service (redis:7-alpine, as `laddr init` writes it)")
    for app in app_services(services):
        set_environment(services[app], {"QUEUE_BACKEND": "redis"}, remove=("KAFKA_BOOTSTRAP",))
        notes += set_depends(services, app, ks.app_depends("redis"), drop={*ks.KAFKA_SERVICE_NAMES})
    return _dumped(doc, text), notes


def _dumped(doc: Document, original: str) -> str:
    out = doc.dump()
    if original and not original.endswith("\n") and out.endswith("\n"):
        out = out[:-1]
    return out


def _position_after(services: CommentedMap, key: str) -> int:
    keys = list(services)
    return keys.index(key) + 1 if key in keys else 0


def set_environment(svc: CommentedMap, values: dict[str, str], remove: tuple[str, ...]) -> None:
    """Set keys in a service's `environment` (a mapping or a `KEY=value` list), in place."""
    env = own_value(svc, "environment")
    if isinstance(env, CommentedSeq):
        for key in remove:
            for i in reversed(range(len(env))):
                if str(env[i]).split("=", 1)[0] == key:
                    del env[i]
        last = None
        for key, value in values.items():
            idx = next((i for i, item in enumerate(env) if str(item).split("=", 1)[0] == key), None)
            if idx is None:
                idx = len(env) if last is None else last + 1
                env.insert(idx, f"{key}={value}")
            else:
                env[idx] = f"{key}={value}"
            last = idx
        return
    if not isinstance(env, CommentedMap):
        env = new_map()
        _insert_after(svc, "environment", env, after=("env_file", "command", "image", "build"))
    for key in remove:
        env.pop(key, None)
    tail_before = (env, list(env)[-1], 2) if len(env) else None
    last = None
    for key, value in values.items():
        if key in env:
            env[key] = value
            last = list(env).index(key)
        else:
            pos = len(env) if last is None else last + 1
            env.insert(pos, key, value)
            last = pos
    if tail_before is not None and list(env)[-1] != tail_before[1]:
        move_comment_between(tail_before, (env, list(env)[-1], 2))


def depends_of(services: CommentedMap, app: str, wanted: dict[str, str], drop: set[str]) -> tuple[CommentedMap, list[str]]:
    """What the app's depends_on becomes: its own entries minus `drop` and undefined ones, plus `wanted`."""
    svc = services[app]
    current = own_value(svc, "depends_on")
    notes: list[str] = []
    if isinstance(current, CommentedMap):
        deps = current
    else:
        deps = new_map()
        for dep in current if isinstance(current, CommentedSeq) else []:
            deps[str(dep)] = new_map({"condition": "service_started"})
    at: int | None = None  # the new entries go where the first replaced one was
    for dep in list(deps):
        if dep in drop:
            at = list(deps).index(dep) if at is None else at
            del deps[dep]
        elif dep not in services:
            del deps[dep]
            notes.append(f"{app}: dropped depends_on {dep} (no such service in this file)")
    at = len(deps) if at is None else at
    for dep, condition in wanted.items():
        if dep not in deps:
            target = services.get(dep)
            if condition == "service_healthy" and isinstance(target, CommentedMap) and "healthcheck" not in target:
                condition = "service_started"
            deps.insert(at, dep, new_map({"condition": condition}))
            at += 1
    return deps, notes


def set_depends(services: CommentedMap, app: str, wanted: dict[str, str], drop: set[str]) -> list[str]:
    svc = services[app]
    deps, notes = depends_of(services, app, wanted, drop)
    old = svc.get("depends_on")
    if old is not deps:
        if "depends_on" in svc:
            if isinstance(old, (CommentedMap, CommentedSeq)) and len(old) and len(deps):
                move_trailing_comments(old, deps)
            svc["depends_on"] = deps
        else:
            _insert_after(svc, "depends_on", deps, after=("environment", "env_file", "command"))
    return notes


def _insert_after(m: CommentedMap, key: str, value: Any, after: tuple[str, ...]) -> None:
    keys = list(m)
    for anchor in after:
        if anchor in keys:
            m.insert(keys.index(anchor) + 1, key, value)
            return
    m[key] = value


__all__ = ["to_kafka", "to_redis", "app_services", "services_of", "depends_of", "is_null"]
