"""The five example agents' workers and the API, end to end on each real broker."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from sandbox.brokers.ports import free_port
from sandbox.protocol import AGENTS
from tests.conftest import settings_for
from tests.procs import Proc, broker_env, start, start_worker

GUIDE_BODY = {"workflow_name": "test_workflow", "initial_task": {"agent": "researcher", "inputs": {"query": "test"}}}


@pytest.fixture(scope="module", params=["redis", "kafka"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, list[Proc]]]:
    """Five workers (coordinator twice) and the api as real processes; yields (backend, api url, procs)."""
    backend = request.param
    settings = settings_for(backend, request)
    logs = tmp_path_factory.mktemp(f"stack-{backend}")
    port = free_port()
    api = start(["-m", "sandbox.api"], broker_env(settings, API_PORT=str(port)), logs / "api.log")
    procs = [api]
    try:
        api.wait_for("Uvicorn running", 60)
        for agent in AGENTS:
            procs.append(start_worker(agent, settings, logs, worker_id=f"{agent}_worker-1"))
        for proc in procs[1:]:
            proc.wait_for("serving agent", 60)
        yield backend, f"http://127.0.0.1:{port}", procs
    finally:
        codes = [proc.terminate() for proc in procs]
        # uvicorn re-raises the SIGTERM it handled once it shut down cleanly: -15 is its clean exit.
        clean = [c in (0, -15) if p is api else c == 0 for p, c in zip(procs, codes)]
        assert all(clean), [p.output()[-2000:] for p, ok in zip(procs, clean) if not ok]


def test_the_guides_curl_returns_the_researchers_result(stack) -> None:
    backend, url, _ = stack
    reply = httpx.post(f"{url}/api/v1/run", json=GUIDE_BODY, timeout=60)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["status"] == "success" and body["agent"] == "researcher"
    assert body["result"]["query"] == "test" and body["result"]["facts"]
    assert body["worker_id"] == "researcher_worker-1" and body["latency_ms"] > 0
    again = httpx.get(f"{url}/api/v1/responses/{body['task_id']}", timeout=10)
    assert again.status_code == 200 and again.json()["result"] == body["result"]


def test_the_coordinator_runs_the_four_step_workflow_over_the_bus(stack) -> None:
    _, url, procs = stack
    body = {"workflow_name": "wf", "initial_task": {"agent": "coordinator", "inputs": {"query": "kafka migration"}}}
    reply = httpx.post(f"{url}/api/v1/run", json=body, timeout=60)
    assert reply.status_code == 200, reply.text
    result = reply.json()["result"]
    assert [s["agent"] for s in result["steps"]] == ["researcher", "analyzer", "writer", "validator"]
    assert [s["worker"] for s in result["steps"]] == [f"{a}_worker-1" for a in ("researcher", "analyzer", "writer", "validator")]
    assert result["valid"] is True and result["report"].startswith("Report on kafka migration")
    # Each step's task is in its worker's log, received and done.
    for step, proc in zip(result["steps"], procs[2:]):
        proc.wait_for(f"task {step['task_id']} done success", 10)


def test_every_agent_answers_and_is_registered(stack) -> None:
    backend, url, _ = stack
    agents = httpx.get(f"{url}/api/v1/agents", timeout=10).json()["agents"]
    # The session's broker also holds other tests' agents: the five must be among them.
    assert set(AGENTS) <= {a["name"] for a in agents}
    for agent in AGENTS:
        body = {"workflow_name": "each", "initial_task": {"agent": agent, "inputs": {"query": "q", "report": "Report on q. Key point: k"}}}
        reply = httpx.post(f"{url}/api/v1/run", json=body, timeout=60)
        assert reply.status_code == 200 and reply.json()["status"] == "success", reply.text
    health = httpx.get(f"{url}/api/v1/health", timeout=10).json()
    assert health["status"] == "ok" and health["backend"] == backend


def test_simulated_failure_is_an_error_response_not_a_hang(stack) -> None:
    _, url, _ = stack
    body = {"workflow_name": "w", "initial_task": {"agent": "writer", "inputs": {"simulate": {"fail": True, "error": "LLM quota"}}}}
    reply = httpx.post(f"{url}/api/v1/run", json=body, timeout=60)
    assert reply.status_code == 200
    assert reply.json()["status"] == "error" and reply.json()["error"] == "LLM quota"


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"workflow_name": "w", "initial_task": {"agent": "nobody", "inputs": {}}}, 404, "unknown agent 'nobody'"),
        ({"workflow_name": "w", "initial_task": {"agent": "researcher", "inputs": "text"}}, 422, "inputs"),
        ({"workflow_name": "", "initial_task": {"agent": "researcher"}}, 422, "workflow_name"),
        ({"initial_task": {"agent": "researcher"}}, 422, "workflow_name"),
        ({"workflow_name": "w", "initial_task": {"agent": "bad name!"}}, 422, "agent"),
        ({"workflow_name": "w", "initial_task": {"agent": "researcher", "inputs": {"simulate": {"delay_ms": 3000}}}, "timeout": 0.3}, 504, "within 0.3s"),
        ({"workflow_name": "w", "initial_task": {"agent": "researcher", "inputs": {"blob": "x" * 1_000_000}}}, 413, "at most"),
    ],
)
def test_bad_requests_get_a_clear_4xx_or_504(stack, body, status, words) -> None:
    _, url, _ = stack
    reply = httpx.post(f"{url}/api/v1/run", json=body, timeout=60)
    assert reply.status_code == status, reply.text
    assert words in reply.json()["detail"]


def test_invalid_json_body_is_a_422(stack) -> None:
    _, url, _ = stack
    reply = httpx.post(f"{url}/api/v1/run", content=b"{not json", headers={"content-type": "application/json"}, timeout=10)
    assert reply.status_code == 422 and "JSON" in reply.json()["detail"]


def test_submit_then_fetch_the_response_by_id(stack) -> None:
    _, url, _ = stack
    queued = httpx.post(f"{url}/api/v1/tasks", json={"agent": "analyzer", "inputs": {"facts": ["a", "bb"]}}, timeout=10)
    assert queued.status_code == 202
    task_id = queued.json()["task_id"]
    for _ in range(100):
        reply = httpx.get(f"{url}/api/v1/responses/{task_id}", timeout=10)
        if reply.status_code == 200:
            break
        time.sleep(0.1)
    assert reply.status_code == 200 and reply.json()["result"]["key_point"] == "bb"
    assert httpx.get(f"{url}/api/v1/responses/does-not-exist", timeout=10).status_code == 404
