"""What an agent is, and how a worker finds one by name.

An agent is one small file in the agents directory: a name, a role, a goal and
an async handler decorated with `@agent`. The handler gets the task's inputs
and a context to log, see the delivery count or ask other agents over the bus.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox.protocol import SANDBOX_META, Task, validate_agent_name

if TYPE_CHECKING:
    from sandbox.bus.base import Bus

BUNDLED_AGENTS_DIR = Path(__file__).resolve().parent.parent / "agents_examples"
# Keys the API and Laddr add to a payload that are not the agent's inputs.
META_KEYS = frozenset({"job_id", "trace_id", "workflow_name", "_batch_id", "_batch_index", SANDBOX_META})


class AgentNotFound(LookupError):
    def __init__(self, name: str, directory: Path, known: list[str]):
        listing = ", ".join(known) or "none"
        super().__init__(f"no agent {name!r} in {directory} (found: {listing})")


class AgentFailed(Exception):
    """Raised by a handler to answer with status "error" and this message."""


@dataclass
class AgentContext:
    task: Task
    delivery_count: int
    worker_id: str
    bus: Bus
    log: logging.Logger
    steps: list[dict[str, Any]] = field(default_factory=list)

    async def ask(self, agent: str, inputs: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        """Delegate to another agent over the bus and return its result."""
        payload = {**inputs, SANDBOX_META: {"parent": self.task.task_id}}  # what `trace` builds the tree from
        response = await self.bus.request(agent, payload, timeout=timeout)
        step = {"agent": agent, "worker": response.worker_id, "task_id": response.task_id, "status": response.status}
        self.steps.append(step)
        if not response.ok:
            raise AgentFailed(f"{agent} failed: {response.error}")
        return response.result if isinstance(response.result, dict) else {"value": response.result}


HandlerFn = Callable[[dict[str, Any], AgentContext], Awaitable[Any]]


@dataclass
class Agent:
    name: str
    role: str
    goal: str
    handler: HandlerFn
    tools: list[str] = field(default_factory=list)


def agent(*, name: str, role: str, goal: str, tools: list[str] | None = None) -> Callable[[HandlerFn], Agent]:
    """Turn an async handler into an Agent the worker can run."""

    def wrap(fn: HandlerFn) -> Agent:
        if not asyncio.iscoroutinefunction(fn):
            raise TypeError(f"agent {name!r}: the handler must be `async def`")
        return Agent(name=validate_agent_name(name), role=role, goal=goal, handler=fn, tools=list(tools or []))

    return wrap


def agents_dir(configured: Path | None) -> Path:
    return configured if configured is not None else BUNDLED_AGENTS_DIR


def list_agents(directory: Path) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.py") if not p.name.startswith("_"))


def load_agent(name: str, directory: Path) -> Agent:
    """Import `<directory>/<name>.py` and return the Agent it defines."""
    validate_agent_name(name)
    path = directory / f"{name}.py"
    if not path.is_file():
        raise AgentNotFound(name, directory, list_agents(directory) if directory.is_dir() else [])
    spec = importlib.util.spec_from_file_location(f"laddr_agents.{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found = [value for value in vars(module).values() if isinstance(value, Agent)]
    if len(found) != 1:
        raise AgentNotFound(name, directory, list_agents(directory))
    return found[0]


def inputs_of(payload: Any) -> dict[str, Any]:
    """The agent's inputs: the payload without the bookkeeping keys."""
    if isinstance(payload, dict):
        inner = payload.get("inputs")
        if isinstance(inner, dict) and set(payload) - META_KEYS <= {"inputs"}:
            return inner
        return {k: v for k, v in payload.items() if k not in META_KEYS}
    return {"value": payload}


async def simulate(inputs: dict[str, Any]) -> None:
    """Honour `{"simulate": {"delay_ms": 200, "fail": true}}`: slow or failing work on demand.

    `"raise": "why"` raises an unexpected error instead: retried, then dead-lettered (a poison task).
    """
    spec = inputs.get("simulate")
    if not isinstance(spec, dict):
        return
    delay = spec.get("delay_ms", 0)
    if isinstance(delay, (int, float)) and not isinstance(delay, bool) and delay > 0:
        await asyncio.sleep(min(float(delay), 3_600_000) / 1000.0)
    if spec.get("raise"):
        raise RuntimeError(str(spec["raise"]))
    if spec.get("fail"):
        raise AgentFailed(str(spec.get("error") or "simulated failure"))
