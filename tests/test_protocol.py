"""The wire format: Laddr 0.9.x documents in, Laddr 0.9.x documents out."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.protocol import (
    DecodeError,
    Response,
    Task,
    decode_response,
    decode_task,
    expected_channels,
    kafka_group,
    kafka_topic,
    other_backend,
    redis_group,
    redis_response_key,
    redis_stream,
    validate_agent_name,
)


def test_names_on_the_wire_are_laddrs() -> None:
    assert redis_stream("researcher") == "laddr:tasks:researcher"
    assert redis_group("researcher") == "researcher_workers"
    assert redis_response_key("abc") == "laddr:response:abc"
    assert kafka_topic("researcher") == "laddr.tasks.researcher"
    assert kafka_group("researcher") == "laddr-researcher-workers"
    assert expected_channels("kafka") == [
        "laddr.tasks.coordinator", "laddr.tasks.researcher", "laddr.tasks.analyzer",
        "laddr.tasks.writer", "laddr.tasks.validator", "laddr.responses",
    ]


def test_a_task_from_laddr_decodes_and_ours_has_exactly_laddrs_fields() -> None:
    laddr = {"task_id": "t1", "agent_name": "writer", "payload": {"query": "q"}, "created_at": 1.5}
    task = decode_task(json.dumps(laddr))
    assert (task.task_id, task.agent_name, task.payload, task.created_at) == ("t1", "writer", {"query": "q"}, 1.5)
    assert json.loads(Task(agent_name="writer", payload={"a": 1}).encode()).keys() == laddr.keys()


def test_a_laddr_response_decodes_and_ours_keeps_laddrs_fields_first() -> None:
    laddr = {"task_id": "t1", "status": "success", "result": {"x": 1}, "error": None, "created_at": 2.0}
    response = decode_response(json.dumps(laddr))
    assert response.ok and response.result == {"x": 1}
    ours = json.loads(Response(task_id="t1", status="error", error="boom", worker_id="w").encode())
    assert set(laddr) <= set(ours) and ours["worker_id"] == "w"


def test_a_bare_laddr_worker_result_without_status_is_still_a_response() -> None:
    response = decode_response(b'{"task_id": "t", "answer": 42}')
    assert response.status == "success" and response.result == {"answer": 42}


@pytest.mark.parametrize(
    "raw, words",
    [
        (b"", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"agent_name": "a", "payload": {}}', "task_id"),
        (b'{"task_id": "t", "payload": {}}', "agent_name"),
        (b'{"task_id": "t", "agent_name": "a"}', "payload"),
        (b'{"task_id": 5, "agent_name": "a", "payload": 1}', "task_id"),
        ("\udcff".encode("utf-8", "surrogatepass"), "not JSON"),
    ],
)
def test_bad_tasks_say_what_is_wrong(raw: bytes, words: str) -> None:
    with pytest.raises(DecodeError, match=words):
        decode_task(raw)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_decode_or_raise_decode_error_only(raw: bytes) -> None:
    for decode in (decode_task, decode_response):
        try:
            decode(raw)
        except DecodeError:
            pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40), json_values)
def test_tasks_round_trip(task_id: str, agent: str, payload: object) -> None:
    task = Task(agent_name=agent, payload=payload, task_id=task_id)
    again = decode_task(task.encode())
    assert (again.task_id, again.agent_name, again.payload) == (task_id, agent, payload)


@pytest.mark.parametrize("name", ["", "a.b", "a b", "x" * 101, "ü", "../etc"])
def test_agent_names_that_would_break_topics_or_paths_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="invalid agent name"):
        validate_agent_name(name)


def test_a_laddr_worker_answer_without_task_id_takes_the_one_its_key_names() -> None:
    raw = b'{"status": "incomplete", "result": "Maximum iterations reached.", "job_id": "j1", "prompt_id": "j1"}'
    response = decode_response(raw, task_id="t-from-key")
    assert (response.task_id, response.status, response.job_id) == ("t-from-key", "incomplete", "j1")
    assert decode_response(b'{"task_id": "inside", "status": "success"}', task_id="key").task_id == "inside"


def test_a_keyless_kafka_answer_is_matched_by_its_job_id_or_refused() -> None:
    response = decode_response(b'{"status": "success", "result": 1, "job_id": "j2", "prompt_id": "p2"}')
    assert response.task_id == "" and response.job_id == "p2"  # Laddr runs the task under prompt_id first
    with pytest.raises(DecodeError, match="job_id"):
        decode_response(b'{"status": "success", "result": 1}')


def test_the_other_backend_is_the_one_a_switch_goes_to():
    assert other_backend("redis") == "kafka"
    assert other_backend("kafka") == "redis"
