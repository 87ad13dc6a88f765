"""`resend ID --to kafka` of a Redis task while both brokers run, and `trace` of a task from before the
switch (its log lines are in the rotated `<replica>.log.1`), on a real local stack."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_cli_local import cli, ok, runtime_of
from tests.cli.test_trace_cli import send, trace

pytestmark = pytest.mark.timeout(900)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    try:
        ok(cli(tmp_path, "up", "--runtime", "local", "--backend", "redis", timeout=300))
        yield tmp_path
    finally:
        if cli(tmp_path, "down", timeout=180).returncode != 0:
            pidfile = runtime_of(tmp_path).dir.pidfile
            if pidfile.exists():
                os.killpg(int(pidfile.read_text().strip()), signal.SIGKILL)


def test_resend_to_the_other_broker_and_trace_across_the_switch(project: Path) -> None:
    first = send(project, "researcher", {"query": "before the switch"})
    assert first["status"] == "success"
    # -- the other broker does not run: one line, exit 2 ------------------------------------
    refused = cli(project, "resend", first["task_id"], "--to", "kafka")
    assert refused.returncode == 2, refused
    assert "kafka broker is not running" in refused.stderr and "--keep-old" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1

    # -- both run: the Redis task goes again as a new task, answered on Kafka ---------------
    ok(cli(project, "switch", "kafka", "--keep-old", timeout=400))
    logs = project / ".laddr-sandbox" / "logs"
    assert first["task_id"] in (logs / "researcher_worker-1.log.1").read_text()  # the switch rotated it
    assert first["task_id"] not in (logs / "researcher_worker-1.log").read_text()
    again = json.loads(ok(cli(project, "resend", first["task_id"], "--to", "kafka", "--json", "--timeout", "90",
                              timeout=150)))
    assert again["task_id"] != first["task_id"] and again["status"] == "success"
    assert again["result"]["query"] == "before the switch"
    on_kafka = trace(project, again["task_id"])
    assert on_kafka["backend"] == "kafka" and on_kafka["tree"]["status"] == "success"
    assert on_kafka["tree"]["replica"] == "researcher_worker-1"

    # -- the task from before the switch keeps its log lines (from the rotated log) -----------
    before = trace(project, first["task_id"])
    assert before["backend"] == "redis" and before["tree"]["status"] == "success"
    assert any("found on redis" in m for m in before["missing"])
    named = [ln["text"] for ln in before["logs"] if first["task_id"] in ln["text"]]
    assert any(" received" in t for t in named) and any("done success" in t for t in named), before["logs"]
    assert [d["replica"] for d in before["tree"]["deliveries"]] == ["researcher_worker-1"]
