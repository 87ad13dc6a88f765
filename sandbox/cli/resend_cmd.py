"""`laddr-sandbox resend ID`: the same payload as a new task, optionally edited, optionally on the other broker."""

from __future__ import annotations

import time

import click
import orjson

from sandbox.bus import BusError, make_bus
from sandbox.cli.common import BadInput, Context, Failed, async_command
from sandbox.cli.tasks import current_bus_settings, parse_inputs
from sandbox.config import Settings
from sandbox.protocol import BACKENDS, other_backend
from sandbox.resend import Original, find_original


@click.command()
@click.argument("task_id", metavar="ID")
@click.option("--edit", is_flag=True, help="Edit the payload in $EDITOR first.")
@click.option("--to", "target", type=click.Choice(BACKENDS), help="Send it on this broker (both must run).")
@click.option("--timeout", type=click.FloatRange(0.01, 3600), default=30.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the new response document only.")
@click.pass_obj
@async_command
async def resend(ctx: Context, task_id: str, edit: bool, target: str | None, timeout: float, as_json: bool) -> None:
    """Send a task again (by task id or dead-letter id) as a new task to the same agent.

    \b
    Examples:
      laddr-sandbox resend 3f0c6a52-0d5e-4a53-9d55-2a8f0f0b7f7e
      laddr-sandbox resend 1764000000000-0 --edit
      laddr-sandbox resend 3f0c6a52-0d5e-4a53-9d55-2a8f0f0b7f7e --to kafka
    """
    runtime = await ctx.runtime()
    settings = await current_bus_settings(runtime)
    other = runtime.bus_settings(other_backend(settings.queue_backend))
    if target not in (None, settings.queue_backend) and not await answers(other):
        raise BadInput(f"the {target} broker is not running: resend --to {target} needs both brokers up "
                       f"(laddr-sandbox switch {target} --keep-old runs both)")
    original = await find_on(settings, task_id)
    if original is None and await answers(other):  # a task from before a switch: on the broker kept running
        original = await find_on(other, task_id)
    if original is None:
        raise BadInput(f"unknown task or dead letter {task_id!r} on the {settings.queue_backend} broker "
                       "(its history is kept for a while; see laddr-sandbox watch --last N)")
    payload = original.payload
    if edit:
        text = click.edit(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode(), extension=".json")
        if text is None:
            raise BadInput("nothing sent: the editor was closed without saving")
        payload = parse_inputs(text)
    where = settings if target in (None, settings.queue_backend) else other
    try:
        async with make_bus(where) as bus:
            started = time.perf_counter()
            response = await bus.request(original.agent, payload, timeout=timeout)
    except BusError as exc:
        if where is settings:
            raise
        raise Failed(f"the {target} broker does not answer ({exc}); start it with a switch --keep-old") from None
    latency_ms = (time.perf_counter() - started) * 1000
    if as_json:
        click.echo(orjson.dumps(response.to_dict()).decode())
    else:
        click.echo(f"{response.status}  new task {response.task_id} (was {original.task_id})  to {original.agent} on "
                   f"{where.queue_backend}  latency {latency_ms:.1f} ms  worker {response.worker_id or '?'}")
        body = {"error": response.error} if response.status == "error" else response.result
        click.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
    if not response.ok:
        raise SystemExit(1)


async def answers(settings: Settings) -> bool:
    """The broker of `settings` runs (a quick ping; a refused connection is a no)."""
    try:
        async with make_bus(settings) as bus:
            return await bus.ping()
    except (BusError, OSError):
        return False


async def find_on(settings: Settings, task_id: str) -> Original | None:
    async with make_bus(settings) as bus:
        return await find_original(bus, task_id)


COMMANDS = [resend]
