"""Bad input on the command line: one clear line, exit code 2 (or 1 when the thing failed), no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import ROOT


def cli(cwd: Path, *args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "NO_COLOR": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "sandbox.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def one_line_error(result: subprocess.CompletedProcess[str], code: int, words: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    "args, words",
    [
        (["scale", "researcher_worker"], "expected SERVICE=N"),
        (["scale", "researcher_worker=lots"], "expected SERVICE=N"),
        (["up", "--backend", "rabbitmq"], "Invalid value for '--backend'"),
        (["switch", "kafka", "--migrate", "--force"], "choose one of --migrate and --force"),
        (["send", "researcher", "{not json"], "invalid JSON in argument"),
        (["send", "researcher", "[1, 2]"], "must be a JSON object"),
        (["send", "researcher", "@/no/such/file.json"], "cannot read /no/such/file.json"),
        (["logs", "researcher_worker", "--tail", "-3"], "Invalid value for '--tail'"),
        (["nosuchcommand"], "No such command 'nosuchcommand'"),
    ],
)
def test_bad_usage_exits_2_with_one_line(tmp_path: Path, args: list[str], words: str) -> None:
    result = cli(tmp_path, *args)
    assert result.returncode == 2, result.stderr
    assert words in result.stderr and "Traceback" not in result.stderr


def test_malformed_env_file_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("QUEUE_BACKEND=kafka\nthis is not an assignment\n")
    one_line_error(cli(tmp_path, "status"), 2, ".env:2: malformed line")


def test_unknown_backend_in_env_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("QUEUE_BACKEND=rabbitmq\n")
    one_line_error(cli(tmp_path, "send", "researcher", "{}"), 2, "QUEUE_BACKEND must be one of redis, kafka")


@pytest.mark.parametrize(
    "line, key",
    [
        ("KAFKA_BOOTSTRAP=:::", "KAFKA_BOOTSTRAP"),
        ("KAFKA_BOOTSTRAP=127.0.0.1:notaport", "KAFKA_BOOTSTRAP"),
        ("REDIS_URL=redis://127.0.0.1:notaport/0", "REDIS_URL"),
        ("SCALE_RESEARCHER_WORKER=-3", "SCALE_RESEARCHER_WORKER"),
        ("KAFKA_BROKERS=9", "KAFKA_BROKERS"),
    ],
)
def test_bad_values_in_env_are_one_line_exit_2_naming_the_key(tmp_path: Path, line: str, key: str) -> None:
    (tmp_path / ".env").write_text(line + "\n")
    one_line_error(cli(tmp_path, "config"), 2, key)


def test_an_env_file_named_on_the_command_line_must_exist(tmp_path: Path) -> None:
    one_line_error(cli(tmp_path, "--env-file", "missing.env", "config"), 2, "--env-file missing.env: no such file")


def test_a_folder_that_is_not_a_laddr_project_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "proj").mkdir()
    one_line_error(cli(tmp_path, "up", "--project", "proj"), 2, "has no laddr.yml")


def test_no_stack_running_is_one_line_exit_1(tmp_path: Path) -> None:
    one_line_error(cli(tmp_path, "status", env_extra={"LADDR_RUNTIME": "local"}), 1, "no sandbox stack is running")


def test_every_command_has_help_with_an_example(tmp_path: Path) -> None:
    from sandbox.cli import cli as group

    for name in group.commands:
        result = cli(tmp_path, name, "--help")
        assert result.returncode == 0 and "Example" in result.stdout, name


def test_config_shows_settings_with_secrets_masked(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("QUEUE_BACKEND=kafka\nKAFKA_SASL_PASSWORD=hunter2\nREDIS_URL=redis://u:pw@127.0.0.1:6379/0\n")
    result = cli(tmp_path, "config", env_extra={"LADDR_API_KEY": "s3cret"})
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout and "s3cret" not in result.stdout and ":pw@" not in result.stdout
    assert "KAFKA_SASL_PASSWORD=****" in result.stdout and "LADDR_API_KEY=****" in result.stdout
    assert "REDIS_URL=redis://****@127.0.0.1:6379/0" in result.stdout and "backend kafka" in result.stdout
