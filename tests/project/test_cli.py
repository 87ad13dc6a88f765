"""`laddr-sandbox migrate kafka|redis --project DIR [--write]`: output and exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sandbox.cli import cli

FILES = (".env", "docker-compose.yml", "requirements.txt")


def _run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, ["migrate", *args], env=env, catch_exceptions=False)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {name: (root / name).read_bytes() for name in FILES}


def test_without_write_it_prints_the_diff_and_changes_nothing(laddr_project: Path) -> None:
    before = _snapshot(laddr_project)
    result = _run("kafka", "--project", str(laddr_project))
    assert result.exit_code == 0, result.output
    for header in ("--- a/.env", "+++ b/docker-compose.yml", "--- a/requirements.txt"):
        assert header in result.stdout
    assert "+QUEUE_BACKEND=kafka" in result.stdout and "+  kafka-ui:" in result.stdout
    assert "run again with --write" in result.stderr
    assert _snapshot(laddr_project) == before


def test_write_then_rollback_is_byte_identical(laddr_project: Path) -> None:
    before = _snapshot(laddr_project)
    result = _run("kafka", "--project", str(laddr_project), "--write")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("wrote ") == 3 and "original kept in .laddr-sandbox/migrate/" in result.stdout
    again = _run("kafka", "--project", str(laddr_project))
    assert again.exit_code == 0 and "nothing to change" in again.stdout
    back = _run("redis", "--project", str(laddr_project), "--write")
    assert back.exit_code == 0, back.output
    assert back.stdout.count("restored from its backup, byte for byte") == 3
    assert _snapshot(laddr_project) == before


def test_the_project_can_come_from_laddr_project(laddr_project: Path) -> None:
    result = _run("kafka", env={"LADDR_PROJECT": str(laddr_project)})
    assert result.exit_code == 0 and "+KAFKA_BOOTSTRAP=kafka:9092" in result.stdout


def test_rollback_without_backup_says_so(laddr_project: Path) -> None:
    assert _run("kafka", "--project", str(laddr_project), "--write").exit_code == 0
    for p in (laddr_project / ".laddr-sandbox" / "migrate").iterdir():
        p.unlink()
    result = _run("redis", "--project", str(laddr_project), "--write")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("the guide's rollback, by transformation") == 2  # .env, docker-compose.yml
    assert "no backup" in result.stderr


@pytest.mark.parametrize(("name", "content", "message"), [
    (None, None, "not a Laddr project"),
    (".env", "REDIS_URL=redis://redis:6379\nnot a setting\n", ".env line 2: cannot parse"),
    ("docker-compose.yml", "services: [\n", "docker-compose.yml: not valid YAML"),
])
def test_bad_input_is_one_line_and_exit_2(laddr_project: Path, tmp_path: Path, name, content, message) -> None:
    target = laddr_project
    if name is None:
        target = tmp_path / "empty"
        target.mkdir()
    else:
        (laddr_project / name).write_text(content)
    result = _run("kafka", "--project", str(target))
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stdout == ""


def test_the_console_command_prints_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "sandbox.cli", "migrate", "kafka", "--project", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"Error: not a Laddr project: {tmp_path} has no laddr.yml (make one with `laddr init`)"


def test_missing_project_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["migrate", "kafka"], env={"LADDR_PROJECT": None})
    assert result.exit_code == 2 and "--project" in result.stderr
