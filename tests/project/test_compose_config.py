"""The migrated docker-compose.yml and the override pass `docker compose config` on the real engine."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from sandbox.project import LaddrProject
from sandbox.project import migrate as m
from sandbox.project.override import kafka_override, redis_override
from tests.project.conftest import GUIDE_AGENTS, assert_on_kafka

APPS = ["api", *(f"{a}_worker" for a in GUIDE_AGENTS)]


def _config(compose: list[str], root: Path, *files: str) -> subprocess.CompletedProcess[str]:
    args = [*compose, "--project-directory", str(root)]
    for f in files:
        args += ["-f", f]
    return subprocess.run([*args, "config", "--format", "json"], cwd=root, capture_output=True, text=True,
                          timeout=60)


def _resolved(compose: list[str], root: Path, *files: str) -> dict:
    proc = _config(compose, root, *files)
    assert proc.returncode == 0, f"docker compose config failed: {proc.stderr.strip()}"
    return json.loads(proc.stdout)


def _assert_on_kafka(config: dict) -> None:
    services = config["services"]
    assert {"zookeeper", "kafka", "kafka-init", "kafka-ui"} <= set(services)
    kafka_env = services["kafka"]["environment"]
    assert "PLAINTEXT://kafka:9092" in kafka_env["KAFKA_ADVERTISED_LISTENERS"]
    assert "BROKER://kafka:29092" in kafka_env["KAFKA_ADVERTISED_LISTENERS"]
    assert kafka_env["KAFKA_JMX_PORT"] == "9101"
    assert services["zookeeper"]["environment"]["ZOOKEEPER_CLIENT_PORT"] == "2181"
    assert [p["target"] for p in services["kafka-ui"]["ports"]] == [8080]
    for app in APPS:
        assert_on_kafka(services, app)


def test_laddr_inits_own_file_fails_config_which_is_why_postgres_goes(docker_compose, laddr_project: Path) -> None:
    proc = _config(docker_compose, laddr_project, "docker-compose.yml")
    assert proc.returncode != 0 and "postgres" in proc.stderr


def test_the_migrated_file_passes_docker_compose_config(docker_compose, laddr_project: Path) -> None:
    m.apply(m.plan(LaddrProject.open(laddr_project), "kafka"))
    _assert_on_kafka(_resolved(docker_compose, laddr_project, "docker-compose.yml"))


def test_the_override_on_the_users_untouched_file_passes(docker_compose, laddr_project: Path, tmp_path: Path) -> None:
    project = LaddrProject.open(laddr_project)
    original = project.compose_file.read_bytes()
    override = tmp_path / "override.kafka.yml"
    override.write_text(kafka_override(project))
    _assert_on_kafka(_resolved(docker_compose, laddr_project, "docker-compose.yml", str(override)))
    assert project.compose_file.read_bytes() == original


def test_the_override_has_the_same_services_as_the_migration(docker_compose, laddr_project: Path,
                                                              tmp_path: Path) -> None:
    project = LaddrProject.open(laddr_project)
    override = tmp_path / "override.kafka.yml"
    override.write_text(kafka_override(project))
    layered = _resolved(docker_compose, laddr_project, "docker-compose.yml", str(override))
    # Only the compose file: the migrated .env would change what env_file gives every app.
    change = next(c for c in m.plan(project, "kafka").changed if c.name == "docker-compose.yml")
    project.compose_file.write_text(change.after)
    migrated = _resolved(docker_compose, laddr_project, "docker-compose.yml")
    for name in ("zookeeper", "kafka", "kafka-init", "kafka-ui", *APPS):
        assert layered["services"][name] == migrated["services"][name], name


def test_the_redis_override_and_the_rolled_back_file_pass(docker_compose, laddr_project: Path, tmp_path: Path) -> None:
    project = LaddrProject.open(laddr_project)
    override = tmp_path / "override.redis.yml"
    override.write_text(redis_override(project))
    services = _resolved(docker_compose, laddr_project, "docker-compose.yml", str(override))["services"]
    for app in APPS:
        assert services[app]["environment"]["QUEUE_BACKEND"] == "redis"
        assert "redis" in services[app]["depends_on"] and "postgres" not in services[app]["depends_on"]
    # Kafka from the start (no backup): the rollback by transformation is a valid file too.
    m.apply(m.plan(project, "kafka"))
    for p in m.backup_dir(project).iterdir():
        p.unlink()
    m.apply(m.plan(project, "redis"))
    services = _resolved(docker_compose, laddr_project, "docker-compose.yml")["services"]
    assert "kafka" not in services and "redis" in services
    # and the Redis override on a project migrated to Kafka
    m.apply(m.plan(project, "kafka"))
    override.write_text(redis_override(project))
    services = _resolved(docker_compose, laddr_project, "docker-compose.yml", str(override))["services"]
    for app in APPS:
        assert services[app]["environment"]["QUEUE_BACKEND"] == "redis"
        assert set(services[app]["depends_on"]) <= {"redis", "minio"}, services[app]["depends_on"]


ANCHORED = """\
# A hand-written file: anchors, merge keys, flow style.
x-app: &app
  build: .
  env_file: .env
  environment: &app-env
    LOG_LEVEL: INFO   # shared by every app

services:
  redis: {image: "redis:7-alpine"}
  api:
    <<: *app
    command: ["python", "-m", "laddr.api.main"]
    environment:
      <<: *app-env
      API_PORT: "8000"
  researcher_worker:
    <<: *app
    command: python -m agents.researcher
    depends_on: [redis]
  tools:  # not an app: left alone
    <<: *app
    command: python -m tools.serve
"""


def test_anchors_and_merge_keys_stay_and_only_the_apps_change(docker_compose, tmp_path: Path) -> None:
    from sandbox.project import composefile

    (tmp_path / ".env").write_text("A=1\n")
    new, _ = composefile.to_kafka(ANCHORED, ["researcher"])
    assert new.startswith(ANCHORED.split("services:")[0])  # the anchors' block, byte for byte
    assert "  redis: {image: \"redis:7-alpine\"}\n" in new
    (tmp_path / "docker-compose.yml").write_text(new)
    services = _resolved(docker_compose, tmp_path, "docker-compose.yml")["services"]
    for app in ("api", "researcher_worker"):
        env = services[app]["environment"]
        assert env["QUEUE_BACKEND"] == "kafka" and env["LOG_LEVEL"] == "INFO", app
        assert "kafka" in services[app]["depends_on"], app
    assert "QUEUE_BACKEND" not in services["tools"]["environment"]
    assert composefile.to_kafka(new, ["researcher"])[0] == new
