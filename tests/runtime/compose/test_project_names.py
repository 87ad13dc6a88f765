"""Each sandbox folder's Compose project name, and the folder label in the compose files.

No engine needed: the names are pure, and `docker compose config` (the real CLI)
shows the label every service gets.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from sandbox.config import Settings
from sandbox.runtime.compose import ComposeRuntime
from sandbox.runtime.compose.config import ROOT_LABEL, ROOT_VAR, project_name
from sandbox.runtime.compose.images import COMPOSE_DIR


def test_the_name_is_the_folders_sanitized_plus_a_hash_of_its_path(tmp_path: Path) -> None:
    one, two = tmp_path / "x" / "My Sandbox.1", tmp_path / "y" / "My Sandbox.1"
    assert project_name(one) == project_name(one)  # stable across runs
    assert project_name(one) != project_name(two)  # same basename, another folder
    assert project_name(one).startswith("mysandbox1-") and len(project_name(one).rsplit("-", 1)[1]) == 8
    assert project_name(tmp_path / "__").startswith("sandbox-")
    for name in (project_name(one), project_name(tmp_path / "..weird--")):
        assert name[0].isalnum() and set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789_-")


def test_a_runtime_takes_its_folders_name_unless_one_is_pinned(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("LADDR_COMPOSE_PROJECT", raising=False)
    monkeypatch.chdir(tmp_path)
    here = ComposeRuntime(Settings())
    assert here.project == project_name(tmp_path) and here.config.root == tmp_path.resolve()
    assert ComposeRuntime(Settings(), cwd=tmp_path / "other").project == project_name(tmp_path / "other")
    monkeypatch.setenv("LADDR_COMPOSE_PROJECT", "pinned")
    assert ComposeRuntime(Settings()).project == "pinned"


def test_an_old_fixed_name_in_the_compose_env_is_not_used(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("LADDR_COMPOSE_PROJECT", raising=False)
    env = tmp_path / "compose.env"
    env.write_text("COMPOSE_PROJECT_NAME=laddr\n")
    monkeypatch.setenv("COMPOSE_PROJECT_NAME", "laddr")
    assert ComposeRuntime(Settings(), env_file=env, cwd=tmp_path).project == project_name(tmp_path)
    assert "COMPOSE_PROJECT_NAME=laddr" not in (COMPOSE_DIR / ".env.example").read_text()


@pytest.mark.parametrize("backend", ["docker-compose.kafka.yml", "docker-compose.kraft.yml", "docker-compose.kraft3.yml",
                                     "docker-compose.redis.yml"])
def test_every_service_is_labelled_with_the_sandbox_folder(backend: str, tmp_path: Path) -> None:
    if not shutil.which("docker") or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode:
        pytest.fail("docker compose (v2) is not installed: run scripts/setup-docker.sh first", pytrace=False)
    out = subprocess.run(["docker", "compose", "--env-file", str(COMPOSE_DIR / ".env.example"), "--profile", "ui",
                          "-f", "docker-compose.yml", "-f", backend, "config", "--format", "json"], cwd=COMPOSE_DIR, capture_output=True,
                         text=True, check=True, env={"PATH": os.environ["PATH"], ROOT_VAR: str(tmp_path)})
    services = json.loads(out.stdout)["services"]
    assert {name: s.get("labels", {}).get(ROOT_LABEL) for name, s in services.items()} == dict.fromkeys(services, str(tmp_path))


def test_kafka_brokers_3_picks_the_three_node_file_and_bootstraps_from_every_node(tmp_path: Path) -> None:
    runtime = ComposeRuntime(Settings(kafka_brokers=3), cwd=tmp_path, compose_dir=COMPOSE_DIR, env_file=tmp_path / "none")
    assert runtime.config.files("kafka")[1] == "docker-compose.kraft3.yml"
    assert runtime.bus_settings("kafka").kafka_bootstrap == "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"
    assert runtime._broker_running("kafka") == ["kafka", "kafka-2", "kafka-3"]
    assert ComposeRuntime(Settings(), cwd=tmp_path, compose_dir=COMPOSE_DIR).config.files("kafka")[1] != "docker-compose.kraft3.yml"
