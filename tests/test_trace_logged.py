"""Trace.logged(): whether every task of a trace has a log line yet (pure logic)."""

from sandbox.runtime.base import LogLine
from sandbox.trace import Trace, TraceNode


def line(text: str) -> LogLine:
    return LogLine(service="researcher_worker", replica="researcher_worker-1", text=text)


def a_trace(logs: list[LogLine]) -> Trace:
    root = TraceNode(task_id="root-1", agent="coordinator", status="success")
    root.children.append(TraceNode(task_id="sub-1", agent="researcher", parent="root-1", status="success"))
    return Trace(task_id="root-1", backend="redis", root=root, logs=logs)


def test_logged_only_once_every_task_has_a_line() -> None:
    assert not a_trace([]).logged()
    assert not a_trace([line("task root-1 received")]).logged()
    assert a_trace([line("task root-1 received"), line("task sub-1 done success in 0.1 ms")]).logged()
