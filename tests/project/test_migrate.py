"""The guide's changes on a real `laddr init` project: the diff, the rollback, idempotence."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.project import LaddrProject, ProjectError
from sandbox.project import composefile, envfile, requirements
from sandbox.project import migrate as m
from sandbox.project.kafka_services import KAFKA_UI_IMAGE
from sandbox.project.yamlio import Document
from tests.project.conftest import GUIDE_AGENTS, assert_on_kafka

FILES = (".env", "docker-compose.yml", "requirements.txt")


def _snapshot(root: Path) -> dict[str, bytes]:
    return {name: (root / name).read_bytes() for name in FILES}


def test_the_diff_shows_the_guides_lines(laddr_project: Path) -> None:
    before = _snapshot(laddr_project)
    plan = m.plan(LaddrProject.open(laddr_project), "kafka")
    assert sorted(c.name for c in plan.changed) == sorted(FILES)
    diff = plan.diff()
    for line in [
        "+# Message Broker Configuration (Kafka)", "+KAFKA_BOOTSTRAP=kafka:9092", "+QUEUE_BACKEND=kafka",
        "+# Previous Redis configuration (commented out)", "+# REDIS_URL=redis://redis:6379", "+# QUEUE_BACKEND=redis",
        "-REDIS_URL=redis://redis:6379",
        "+laddr[kafka]>=0.9.6", "-laddr>=0.9.6", "+aiokafka>=0.11.0", "-aiokafka>=0.8.0",
        "+  zookeeper:", "+      ZOOKEEPER_CLIENT_PORT: 2181", "+  kafka:",
        "+      KAFKA_LISTENERS: PLAINTEXT://0.0.0.0:9092,BROKER://0.0.0.0:29092,HOST://0.0.0.0:19092",
        "+      KAFKA_JMX_PORT: 9101", "+  kafka-ui:", f"+    image: ${{KAFKA_UI_IMAGE:-{KAFKA_UI_IMAGE}}}",
        '+    ports: ["127.0.0.1:${KAFKA_UI_HOST_PORT:-8080}:8080"]',
        "-      QUEUE_BACKEND: redis", "+      KAFKA_BOOTSTRAP: kafka:9092",
    ]:
        assert line in diff.splitlines(), line
    assert KAFKA_UI_IMAGE.startswith("ghcr.io/kafbat/kafka-ui:v1.")
    assert _snapshot(laddr_project) == before  # a plan writes nothing


def test_every_worker_and_the_api_point_at_kafka(laddr_project: Path) -> None:
    text = (laddr_project / "docker-compose.yml").read_text()
    new, notes = composefile.to_kafka(text, list(GUIDE_AGENTS))
    services = Document(new, "docker-compose.yml").data["services"]
    for app in ["api", *(f"{a}_worker" for a in GUIDE_AGENTS)]:
        assert_on_kafka(services, app)
    assert "redis" in services  # kept for the rollback
    script = services["kafka-init"]["command"][0]
    for topic in [*(f"laddr.tasks.{a}" for a in GUIDE_AGENTS), "laddr.responses"]:
        assert topic in script
    # `laddr init` 0.9.6 makes every worker wait for a postgres it does not define: said, not hidden.
    assert any("dropped depends_on postgres" in n for n in notes)


def test_kafka_then_redis_restores_every_file_byte_for_byte(laddr_project: Path) -> None:
    before = _snapshot(laddr_project)
    project = LaddrProject.open(laddr_project)
    m.apply(m.plan(project, "kafka"))
    assert _snapshot(laddr_project) != before
    assert (laddr_project / ".laddr-sandbox" / "migrate" / ".env.redis").read_bytes() == before[".env"]
    back = m.plan(project, "redis")
    assert {c.how for c in back.changed} == {"backup"}
    m.apply(back)
    assert _snapshot(laddr_project) == before
    assert not (laddr_project / ".laddr-sandbox").exists()


def test_migrate_kafka_twice_changes_nothing_the_second_time(laddr_project: Path) -> None:
    project = LaddrProject.open(laddr_project)
    m.apply(m.plan(project, "kafka"))
    after = _snapshot(laddr_project)
    again = m.plan(project, "kafka")
    assert again.changed == ()
    assert m.apply(again) == [] and _snapshot(laddr_project) == after
    # and each transformation on its own
    env, compose, reqs = (after[n].decode() for n in FILES)
    assert envfile.to_kafka(env) == env
    assert composefile.to_kafka(compose, list(GUIDE_AGENTS))[0] == compose
    assert requirements.to_kafka(reqs) == reqs


def test_the_users_comments_order_and_quoting_survive(laddr_project: Path) -> None:
    path = laddr_project / "docker-compose.yml"
    text = path.read_text()
    # `laddr init` writes no comments; a user's file has some.
    text = "# my stack, do not lose this\n" + text
    text = text.replace("  minio:\n", "  # object storage for large responses\n  minio:\n", 1)
    text = text.replace("      AGENT_NAME: researcher\n", "      AGENT_NAME: researcher  # keep me\n", 1)
    text = text.replace("      AGENT_NAME: writer\n", "      AGENT_NAME: writer\n      # more settings later\n", 1)
    text = text.replace("    - postgres\n    volumes:", "    - postgres\n    # the code, live\n    volumes:", 1)
    path.write_text(text)
    new, _ = composefile.to_kafka(text, list(GUIDE_AGENTS))
    for kept in ["# my stack, do not lose this\n", "  # object storage for large responses\n  minio:\n",
                 "AGENT_NAME: researcher  # keep me\n", "MINIO_SECURE: 'false'\n", "minio_data: null\n",
                 "cpus: '1.0'\n", "KAFKA_BOOTSTRAP: kafka:9092\n      # more settings later\n    depends_on:\n",
                 "condition: service_completed_successfully\n    # the code, live\n    volumes:\n"]:
        assert kept in new, kept
    old_order = list(Document(text, "x").data["services"])
    new_order = list(Document(new, "x").data["services"])
    assert [s for s in new_order if s in old_order] == old_order
    assert new_order[old_order.index("redis") + 1:][:4] == ["zookeeper", "kafka", "kafka-init", "kafka-ui"]
    # every line of the user's file is still there, in its order, apart from the ones the guide changes
    unchanged = [line for line in text.splitlines() if "redis" not in line and "postgres" not in line
                 and "depends_on" not in line]
    it = iter(new.splitlines())
    assert all(any(line == n for n in it) for line in unchanged)


def test_without_a_backup_the_rollback_is_the_guides_transformation(laddr_project: Path) -> None:
    project = LaddrProject.open(laddr_project)
    m.apply(m.plan(project, "kafka"))
    # A project that was on Kafka from the start: no backups.
    for p in (laddr_project / ".laddr-sandbox" / "migrate").iterdir():
        p.unlink()
    back = m.plan(project, "redis")
    assert {c.how for c in back.changed} == {"transform"}
    assert all(any("no backup" in n for n in c.notes) for c in back.changed)
    m.apply(back)
    env = envfile.values((laddr_project / ".env").read_text())
    assert env["QUEUE_BACKEND"] == "redis" and env["REDIS_URL"] == "redis://redis:6379"
    assert "KAFKA_BOOTSTRAP" not in env
    assert "# KAFKA_BOOTSTRAP=kafka:9092" in (laddr_project / ".env").read_text()
    services = Document((laddr_project / "docker-compose.yml").read_text(), "x").data["services"]
    assert not {"zookeeper", "kafka", "kafka-init", "kafka-ui"} & set(services)
    for app in ["api", *(f"{a}_worker" for a in GUIDE_AGENTS)]:
        assert services[app]["environment"]["QUEUE_BACKEND"] == "redis"
        assert "KAFKA_BOOTSTRAP" not in services[app]["environment"]
        assert list(services[app]["depends_on"]) in (["redis"], ["redis", "minio"])
    assert m.plan(project, "redis").changed == ()  # and that is idempotent too


def test_a_file_edited_after_the_write_is_rolled_back_by_transformation(laddr_project: Path) -> None:
    project = LaddrProject.open(laddr_project)
    m.apply(m.plan(project, "kafka"))
    env = laddr_project / ".env"
    env.write_text(env.read_text() + "MY_NEW_SETTING=1\n")
    back = {c.name: c for c in m.plan(project, "redis").changed}
    assert back[".env"].how == "transform" and "changed since" in back[".env"].notes[0]
    assert "MY_NEW_SETTING=1" in back[".env"].after
    assert back["docker-compose.yml"].how == "backup"


def test_a_project_without_a_compose_file_migrates_the_rest(laddr_project: Path) -> None:
    (laddr_project / "docker-compose.yml").unlink()
    plan = m.plan(LaddrProject.open(laddr_project), "kafka")
    assert sorted(c.name for c in plan.changed) == [".env", "requirements.txt"]
    assert any("no docker-compose.yml" in n for n in plan.notes)


def test_requirements_without_aiokafka_get_it_after_laddr() -> None:
    assert requirements.to_kafka("laddr>=0.9.6\nrich\n") == "laddr[kafka]>=0.9.6\naiokafka>=0.11.0\nrich\n"
    assert requirements.to_kafka("laddr[all]==0.9.6\naiokafka\n") == "laddr[all]==0.9.6\naiokafka\n"
    assert requirements.to_kafka("aiokafka>=0.12  # fast\n") == "aiokafka>=0.12  # fast\n"


def test_env_without_broker_lines_gets_the_block_at_the_end() -> None:
    out = envfile.to_kafka("A=1")
    assert out == ("A=1\n\n# Message Broker Configuration (Kafka)\nKAFKA_BOOTSTRAP=kafka:9092\nQUEUE_BACKEND=kafka\n\n"
                   "# Previous Redis configuration (commented out)\n# REDIS_URL=redis://redis:6379/0\n"
                   "# QUEUE_BACKEND=redis\n")


@pytest.mark.parametrize(("name", "content", "message"), [
    (".env", "REDIS_URL=redis://redis:6379\nthis is not a setting\n", ".env line 2: cannot parse"),
    ("docker-compose.yml", "services:\n  api: [unclosed\n", "docker-compose.yml: not valid YAML"),
    ("docker-compose.yml", "- just\n- a list\n", "docker-compose.yml: no `services:` mapping"),
])
def test_bad_files_are_one_line_errors(laddr_project: Path, name: str, content: str, message: str) -> None:
    (laddr_project / name).write_text(content)
    with pytest.raises(ProjectError) as err:
        m.plan(LaddrProject.open(laddr_project), "kafka")
    assert message in str(err.value) and "\n" not in str(err.value)
