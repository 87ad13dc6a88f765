"""`laddr-sandbox trace TASK_ID`: what happened to one task, across agents, replicas and brokers."""

from __future__ import annotations

import re

import click
import orjson

from sandbox.bus import BusError, make_bus
from sandbox.cli.common import BadInput, Context, async_command
from sandbox.cli.tasks import current_bus_settings
from sandbox.protocol import other_backend
from sandbox.runtime.base import Runtime
from sandbox.trace import Trace, collect, runtime_logs
from sandbox.trace_text import render

TASK_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
LOG_TAIL = 20_000


async def trace_task(runtime: Runtime, task_id: str) -> Trace:
    """The trace on the current broker; a task found nowhere there is looked for on the other one if it runs."""
    settings = await current_bus_settings(runtime)
    logs = runtime_logs(runtime, LOG_TAIL)
    async with make_bus(settings) as bus:
        trace = await collect(bus, task_id, runtime.worker_services, logs)
    if trace.root.published is None:
        other = other_backend(settings.queue_backend)
        try:
            async with make_bus(runtime.bus_settings(other)) as bus:
                if await bus.ping():
                    elsewhere = await collect(bus, task_id, runtime.worker_services, logs)
                    if elsewhere.root.published is not None:
                        elsewhere.missing.insert(0, f"found on {other}, the broker before a switch")
                        return elsewhere
        except (BusError, OSError):
            trace.missing.append(f"the {other} broker is not running: it cannot be searched")
    return trace


@click.command()
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="The trace as one JSON document.")
@click.pass_obj
@async_command
async def trace(ctx: Context, task_id: str, as_json: bool) -> None:
    """A task's tree (a coordinator's sub-tasks), deliveries, log lines and responses.

    \b
    Examples:
      laddr-sandbox trace 3f0c6a52-0d5e-4a53-9d55-2a8f0f0b7f7e
      laddr-sandbox trace 3f0c6a52-0d5e-4a53-9d55-2a8f0f0b7f7e --json | jq .tree
    """
    if not TASK_ID.match(task_id):
        raise BadInput(f"invalid task id {task_id!r}")
    result = await trace_task(await ctx.runtime(), task_id)
    if not result.found and not result.logs:
        why = "; ".join(m for m in result.missing if "broker is not running" in m)
        raise BadInput(f"unknown task {task_id}: not on the {result.backend} broker nor in any worker's log "
                       "(current or rotated)"
                       + (f" ({why}; a task from before a backend switch is only found while that broker runs)"
                          if why else ""))
    if as_json:
        click.echo(orjson.dumps(result.to_dict()).decode())
        return
    for line in render(result):
        click.echo(line)


COMMANDS = [trace]
