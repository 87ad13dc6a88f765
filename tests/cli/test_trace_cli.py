"""`trace`, `dlq`, `resend`, `watch --from` on a real local stack, once on Redis and once on Kafka."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_cli_local import cli, cli_env, ok, runtime_of

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module", params=["redis", "kafka"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    project = tmp_path_factory.mktemp(f"trace-{request.param}")
    (project / ".env").write_text("LADDR_CLAIM_IDLE_MS=1000\nLADDR_MAX_DELIVERIES=3\n")
    try:
        ok(cli(project, "up", "--runtime", "local", "--backend", request.param, timeout=300))
        yield project
    finally:
        if cli(project, "down", timeout=120).returncode != 0:
            pidfile = runtime_of(project).dir.pidfile
            if pidfile.exists():
                os.killpg(int(pidfile.read_text().strip()), signal.SIGKILL)


def send(project: Path, agent: str, inputs: dict, timeout: float = 60) -> dict:
    result = cli(project, "send", agent, json.dumps(inputs), "--json", "--timeout", str(timeout), timeout=timeout + 30)
    return json.loads(result.stdout)


def trace(project: Path, task_id: str) -> dict:
    return json.loads(ok(cli(project, "trace", task_id, "--json")))


def test_a_coordinators_trace_shows_its_four_sub_tasks_replicas_and_log_lines(stack: Path) -> None:
    answer = send(stack, "coordinator", {"query": "trace me"})
    assert answer["status"] == "success"
    doc = trace(stack, answer["task_id"])
    tree = doc["tree"]
    assert tree["agent"] == "coordinator" and tree["status"] == "success" and tree["parent"] is None
    children = tree["children"]
    assert [c["agent"] for c in children] == ["researcher", "analyzer", "writer", "validator"]
    assert [c["task_id"] for c in children] == [s["task_id"] for s in answer["result"]["steps"]]
    for child in [tree, *children]:
        assert child["replica"] == f"{child['agent']}_worker-1" and child["delivery_count"] == 1
        assert child["published"] and child["received"] and child["answered"] and child["duration_ms"] is not None
        assert child["response"]["status"] == "success"
        named = [ln for ln in doc["logs"] if child["task_id"] in ln["text"]]
        assert any("received" in ln["text"] for ln in named) and any("done success" in ln["text"] for ln in named)
        assert {ln["replica"] for ln in named} == {child["replica"]}
    text = ok(cli(stack, "trace", answer["task_id"]))
    assert "5 task(s), finished" in text and text.count("└ ") == 4 and "█" in text
    assert "log lines:" in text and "responses:" in text and '"status": "success"' in text


def test_a_task_redelivered_after_kill_9_shows_both_deliveries(stack: Path) -> None:
    out = stack / "slow.json"
    log = stack / ".laddr-sandbox" / "logs" / "researcher_worker-1.log"
    before = log.read_text().count(" received")
    with out.open("w") as sink:
        sender = subprocess.Popen(
            [sys.executable, "-m", "sandbox.cli", "send", "researcher",
             '{"query": "slow", "simulate": {"delay_ms": 3000}}', "--json", "--timeout", "90"],
            cwd=stack, env=cli_env(), stdout=sink, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and log.read_text().count(" received") == before:
            time.sleep(0.1)  # received by the worker, not answered yet (3 s)
        ok(cli(stack, "kill", "researcher_worker"))
        assert sender.wait(timeout=120) == 0, out.read_text()
    answer = json.loads(out.read_text().splitlines()[-1])
    doc = trace(stack, answer["task_id"])
    deliveries = doc["tree"]["deliveries"]
    assert [d["count"] for d in deliveries] == [1, 2], deliveries
    assert deliveries[0]["status"] is None and deliveries[1]["status"] == "success"
    assert doc["tree"]["delivery_count"] == 2 and doc["tree"]["status"] == "success"
    assert "delivered again" in ok(cli(stack, "trace", answer["task_id"]))


def test_a_poison_task_traces_as_dead_with_its_reason(stack: Path) -> None:
    answer = send(stack, "analyzer", {"facts": [], "simulate": {"raise": "the tool is down"}})
    assert answer["status"] == "error"
    tree = trace(stack, answer["task_id"])["tree"]
    assert tree["status"] == "dead" and "the tool is down" in tree["dead_reason"]
    assert tree["delivery_count"] == 3 and len(tree["deliveries"]) == 3


def test_a_task_without_a_parent_as_laddrs_client_sends_it_traces_alone(stack: Path) -> None:
    import asyncio

    from sandbox.bus import make_bus

    task_id = str(uuid.uuid4())
    raw = json.dumps({"task_id": task_id, "agent_name": "researcher", "payload": {"query": "laddr"},
                      "created_at": time.time()}).encode()

    async def publish() -> None:
        runtime = runtime_of(stack)
        async with make_bus(runtime.bus_settings(await runtime.current_backend())) as bus:
            waiter = await bus.expect(task_id)
            await bus.publish_raw("researcher", raw, key=task_id)
            await asyncio.wait_for(waiter, 60)

    asyncio.run(publish())
    doc = trace(stack, task_id)
    assert doc["tree"]["children"] == [] and doc["tree"]["parent"] is None
    assert doc["tree"]["status"] == "success" and doc["tree"]["payload"] == {"query": "laddr"}


def test_an_unknown_task_id_is_bad_usage(stack: Path) -> None:
    result = cli(stack, "trace", "00000000-0000-4000-8000-000000000000")
    assert result.returncode == 2 and "unknown task" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1



def dead_letters(project: Path) -> list[dict]:
    return [json.loads(line) for line in ok(cli(project, "dlq", "--json", "--limit", "1000")).splitlines()]


def test_a_poison_task_is_a_dead_letter_requeue_lands_it_again_with_a_higher_count_drop_removes_it(stack: Path) -> None:
    answer = send(stack, "writer", {"topic": "x", "simulate": {"raise": "poison pill"}})
    task_id = answer["task_id"]
    mine = [d for d in dead_letters(stack) if task_id in json.dumps(d["payload"])]
    assert len(mine) == 1, mine
    letter = mine[0]
    assert letter["agent"] == "writer" and letter["delivery_count"] == 3 and "poison pill" in letter["reason"]
    assert letter["source"].endswith("writer") and letter["time"] > 0
    listing = ok(cli(stack, "dlq"))
    assert letter["id"] in listing and "deliveries 3" in listing and "poison pill" in listing

    ok(cli(stack, "dlq", "--requeue", letter["id"]))
    deadline = time.monotonic() + 90
    again: list[dict] = []
    while time.monotonic() < deadline and not again:
        again = [d for d in dead_letters(stack) if task_id in json.dumps(d["payload"])]
        time.sleep(0.5)
    assert [d["delivery_count"] for d in again] == [6], again  # 3 more attempts, counted on from 3
    assert again[0]["id"] != letter["id"]
    assert trace(stack, task_id)["tree"]["delivery_count"] == 6

    refused = cli(stack, "dlq", "--drop", again[0]["id"])  # no terminal to confirm on: not dropped
    assert refused.returncode == 2 and "--yes" in refused.stderr
    ok(cli(stack, "dlq", "--drop", again[0]["id"], "--yes"))
    assert not [d for d in dead_letters(stack) if task_id in json.dumps(d["payload"])]
    unknown = cli(stack, "dlq", "--requeue", "nope")
    assert unknown.returncode == 2 and "no dead letter" in unknown.stderr


def test_requeue_all_sends_every_dead_letter_back(stack: Path) -> None:
    ids = [send(stack, "validator", {"report": "r", "simulate": {"raise": f"bad {i}"}})["task_id"] for i in range(2)]
    assert all(any(t in json.dumps(d["payload"]) for d in dead_letters(stack)) for t in ids)
    out = ok(cli(stack, "dlq", "--requeue-all"))
    assert "sent back" in out
    deadline = time.monotonic() + 90
    counts: dict[str, list[int]] = {}
    while time.monotonic() < deadline:
        letters = dead_letters(stack)
        counts = {t: [d["delivery_count"] for d in letters if t in json.dumps(d["payload"])] for t in ids}
        if all(c == [6] for c in counts.values()):
            break
        time.sleep(0.5)
    assert all(c == [6] for c in counts.values()), counts


def test_resend_gives_a_new_task_id_and_its_answer_edit_too(stack: Path) -> None:
    first = send(stack, "researcher", {"query": "again"})
    again = json.loads(ok(cli(stack, "resend", first["task_id"], "--json")))
    assert again["task_id"] != first["task_id"] and again["status"] == "success"
    assert again["result"]["query"] == "again"
    editor = stack / "editor.sh"  # $EDITOR: rewrites the payload in place
    editor.write_text("#!/bin/sh\nsed -i 's/again/edited/' \"$1\"\n")
    editor.chmod(0o755)
    env = {**cli_env(), "EDITOR": str(editor)}
    edited = subprocess.run([sys.executable, "-m", "sandbox.cli", "resend", first["task_id"], "--edit", "--json"],
                            cwd=stack, env=env, capture_output=True, text=True, timeout=120)
    assert edited.returncode == 0, edited.stderr
    assert json.loads(edited.stdout)["result"]["query"] == "edited"
    unknown = cli(stack, "resend", "00000000-0000-4000-8000-000000000000")
    assert unknown.returncode == 2 and "unknown task" in unknown.stderr
    poison = send(stack, "researcher", {"query": "p", "simulate": {"raise": "again and again"}})
    [letter] = [d for d in dead_letters(stack) if poison["task_id"] in json.dumps(d["payload"])]
    from_dlq = cli(stack, "resend", letter["id"], "--json")
    assert from_dlq.returncode == 1 and json.loads(from_dlq.stdout)["task_id"] != poison["task_id"]


def test_watch_from_returns_the_messages_after_that_time_and_none_earlier(stack: Path) -> None:
    before = send(stack, "researcher", {"query": "before"})["task_id"]
    # "Ns ago" is read when the CLI has started: the gap lets it take up to 4.5 s (loaded CI) and
    # still fall between the two tasks
    time.sleep(6.0)
    cut = time.time()
    time.sleep(0.5)
    after = send(stack, "researcher", {"query": "after"})["task_id"]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(cut))
    channel = "laddr.tasks.researcher" if "kafka" in stack.name else "laddr:tasks:researcher"
    for since in (stamp, f"{int(time.time() - cut) + 4}s"):
        out = ok(cli(stack, "watch", channel, "--from", since, "--json", "--count", "1", timeout=60))
        docs = [json.loads(line) for line in out.splitlines()]
        assert docs[0]["task_id"] == after, (since, docs)
        assert before not in out
    bad = cli(stack, "watch", "--from", "yesterday-ish")
    assert bad.returncode == 2 and "--from" in bad.stderr
    bad = cli(stack, "watch", "--offset", "0:1")
    assert bad.returncode == 2 and "--offset" in bad.stderr
