"""The migration as a Compose override: the project's own docker-compose.yml stays untouched.

    docker compose -f docker-compose.yml -f <(kafka_override(project)) up

The services and app settings come from kafka_services, like `migrate kafka`'s.
Where an app's `depends_on` must lose entries (Redis; services the file does not
define, like the `postgres` of `laddr init` 0.9.6), it is replaced whole with
Compose's `!override` tag (Compose v2.24.4 and later); otherwise it is merged.
"""

from __future__ import annotations

from ruamel.yaml.comments import CommentedMap

from . import kafka_services as ks
from .composefile import app_services, depends_of
from .layout import LaddrProject
from .migrate import read_text
from .yamlio import Document, dump_fragment, new_map, tagged

HEADER = "# laddr-sandbox: {what} for the Laddr project {root}\n# Layered on its own file: docker compose -f docker-compose.yml -f <this file>\n"


def _project_services(project: LaddrProject) -> CommentedMap:
    if project.compose_file.is_file():
        doc = Document(read_text(project.compose_file), project.compose_file.name)
        services = doc.data.get("services") if isinstance(doc.data, CommentedMap) else None
        if isinstance(services, CommentedMap):
            return services
    # No compose file: the services `laddr init` / `laddr add agent` would have written.
    return new_map({name: new_map({"command": "python -m agents.x"})
                    for name in ("api", *(a.worker_service for a in project.agents))})


def kafka_override(project: LaddrProject, *, ui_profile: str | None = None, leave_out: tuple[str, ...] = ()) -> str:
    """YAML text: ZooKeeper, Kafka, the topics, Kafka UI, and every app pointed at Kafka.

    `leave_out`: services of the project's file that will not run (the apps stop waiting for them)."""
    return _override(project, "kafka", ui_profile, leave_out)


def redis_override(project: LaddrProject, *, leave_out: tuple[str, ...] = ()) -> str:
    """YAML text: a redis service if the project has none, and every app pointed at Redis."""
    return _override(project, "redis", None, leave_out)


def _override(project: LaddrProject, backend: str, ui_profile: str | None, leave_out: tuple[str, ...] = ()) -> str:
    theirs = _project_services(project)
    out = new_map()
    if backend == "kafka":
        for name, svc in ks.kafka_services(project.agent_names, ui_profile=ui_profile).items():
            if name not in theirs:
                out[name] = svc
        drop = {"redis"}
    else:
        if "redis" not in theirs:
            out["redis"] = ks.redis_service()
        drop = set(ks.KAFKA_SERVICE_NAMES)
    drop |= set(leave_out)
    # depends_of looks the targets up: the file's services plus the ones added here.
    known = new_map({**theirs, **out})
    for app in app_services(theirs):
        entry = new_map({"environment": new_map(ks.app_environment(backend))})
        original = theirs[app].get("depends_on")
        names = set(original) if original else set()
        deps, _ = depends_of(known, app, ks.app_depends(backend), drop=drop)
        deps = new_map({k: new_map(dict(v)) for k, v in deps.items()})
        if names - set(deps):  # something must go: replace the list whole
            entry["depends_on"] = tagged(deps, "!override")
        else:
            entry["depends_on"] = deps
        out[app] = entry
    what = "Kafka (the migration guide)" if backend == "kafka" else "Redis"
    return HEADER.format(what=what, root=project.root) + dump_fragment(new_map({"services": out}))
