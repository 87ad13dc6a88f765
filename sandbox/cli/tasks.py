"""Commands that talk to agents and watch the broker: send, watch, verify (dlq: dead_letters.py)."""

from __future__ import annotations

import contextlib
import fnmatch
import time
from pathlib import Path
from typing import Any

import click
import orjson

from sandbox.bus import Bus, make_bus
from sandbox.bus.presence import agent_presence, describe_presence, known_agents
from sandbox.cli.common import BadInput, Context, Failed, async_command
from sandbox.cli.formatting import message_json, message_line
from sandbox.config import Settings
from sandbox.laddr_compat import matching_note
from sandbox.protocol import expected_channels, validate_agent_name
from sandbox.runtime.base import Runtime, StackNotRunning
from sandbox.seek import parse_from, parse_offset


def parse_inputs(text: str) -> dict[str, Any]:
    """JSON from the command line, or @file; it must be an object."""
    source = "argument"
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            text, source = path.read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"cannot read {path}: {exc}") from None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise BadInput(f"invalid JSON in {source}: {exc}") from None
    if not isinstance(value, dict):
        raise BadInput(f"the inputs must be a JSON object like '{{\"query\": \"test\"}}', not {type(value).__name__}")
    return value


async def current_bus_settings(runtime: Runtime) -> Settings:
    backend = await runtime.current_backend()
    if backend is None:
        raise Failed(str(StackNotRunning(runtime.name)))
    return runtime.bus_settings(backend)


async def require_agent(bus: Bus, agent: str) -> None:
    try:
        validate_agent_name(agent)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    known = await known_agents(bus, ())
    if agent not in known:
        raise BadInput(f"unknown agent {agent!r}; known (registry and broker): {', '.join(known) or 'none'}")


@click.command()
@click.argument("agent")
@click.argument("inputs", default="{}", metavar="JSON|@FILE")
@click.option("--timeout", type=click.FloatRange(0.01, 3600), default=30.0, show_default=True, help="Seconds to wait.")
@click.option("--json", "as_json", is_flag=True, help="Print the response document only.")
@click.pass_obj
@async_command
async def send(ctx: Context, agent: str, inputs: str, timeout: float, as_json: bool) -> None:
    """Send a task to an agent and print its response and the latency.

    \b
    Examples:
      laddr-sandbox send researcher '{"query": "test"}'
      laddr-sandbox send coordinator @inputs.json --timeout 60
    """
    payload = parse_inputs(inputs)
    async with make_bus(await current_bus_settings(await ctx.runtime())) as bus:
        await require_agent(bus, agent)
        started = time.perf_counter()
        response = await bus.request(agent, payload, timeout=timeout)
        latency_ms = (time.perf_counter() - started) * 1000
    if as_json:
        click.echo(orjson.dumps(response.to_dict()).decode())
    else:
        colour = "green" if response.ok else "yellow" if response.status != "error" else "red"
        click.echo(click.style(response.status, fg=colour, bold=True)
                   + f"  task {response.task_id}  latency {latency_ms:.1f} ms  worker {response.worker_id or '?'}")
        body = {"error": response.error} if response.status == "error" else response.result
        click.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
    if note := matching_note(response):
        click.echo(click.style(f"note: {note}", fg="yellow"), err=True)
    if not response.ok:
        raise SystemExit(1)


@click.command()
@click.argument("pattern", required=False)
@click.option("--last", type=click.IntRange(0, 100_000), default=0, help="First replay the last N messages.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--count", type=click.IntRange(1), default=None, help="Stop after N messages.")
@click.option("--from", "since", metavar="WHEN", help="Start at a time: 10m (ago), 2h, 2026-12-02T10:00.")
@click.option("--offset", metavar="POS", help="Start PATTERN's topic at PARTITION:OFFSET (Kafka) or stream id (Redis).")
@click.pass_obj
@async_command
async def watch(ctx: Context, pattern: str | None, last: int, as_json: bool, count: int | None,
                since: str | None, offset: str | None) -> None:
    """Live messages on the broker (tasks, responses, dead letters), one line each.

    PATTERN filters by topic/stream name (shell-style, e.g. 'laddr.tasks.*') or by
    any text in the message.

    \b
    Examples:
      laddr-sandbox watch
      laddr-sandbox watch 'laddr.tasks.researcher' --last 20
      laddr-sandbox watch --json --count 10
      laddr-sandbox watch --from 10m
      laddr-sandbox watch laddr.tasks.researcher --offset 0:42
    """
    settings = await current_bus_settings(await ctx.runtime())
    start, at = seek_args(since, offset, pattern, settings.queue_backend)
    seen = 0
    if pattern:  # a pattern that matches nothing must not look like a silent broker
        click.echo(f"showing messages whose topic/stream matches {pattern!r} (shell-style: * ? [..]) "
                   f"or contains it, or whose text contains it", err=True)
    # aclosing: the tap's own consumer stops before the bus closes, not in asyncio.run's shutdown
    async with make_bus(settings) as bus, contextlib.aclosing(bus.tap(last=last, since=start, at=at)) as messages:
        async for message in messages:
            if pattern and not (fnmatch.fnmatch(message.channel, pattern) or pattern in message.channel
                                or pattern.encode() in message.raw):
                continue
            click.echo(message_json(message) if as_json else message_line(message))
            seen += 1
            if count is not None and seen >= count:
                return


def seek_args(since: str | None, offset: str | None, pattern: str | None,
              backend: str) -> tuple[float | None, tuple[str, str] | None]:
    """--from and --offset checked (exit 2 when bad): the tap's `since` and `at`."""
    if since and offset:
        raise BadInput("give --from or --offset, not both")
    try:
        start = parse_from(since) if since else None
        position = parse_offset(offset, backend) if offset else None
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    if position is not None and (not pattern or any(c in pattern for c in "*?[")):
        raise BadInput("--offset needs PATTERN to name one topic or stream, e.g. laddr.tasks.researcher")
    return start, (pattern, position) if position is not None and pattern else None


@click.command()
@click.option("--timeout", type=click.FloatRange(0.1, 600), default=30.0, show_default=True)
@click.pass_obj
@async_command
async def verify(ctx: Context, timeout: float) -> None:
    """The migration guide's verification: topics (or streams), five workers, one round trip per agent.

    Prints a checklist and exits 1 on any miss.

    \b
    Example:
      laddr-sandbox verify
    """
    runtime = await ctx.runtime()
    settings = await current_bus_settings(runtime)
    misses = 0

    def check(ok: bool, text: str) -> None:
        nonlocal misses
        misses += not ok
        click.echo((click.style("  ✓ ", fg="green") if ok else click.style("  ✗ ", fg="red")) + text)

    click.echo(f"verifying the {settings.queue_backend} stack at {settings.broker_address}")
    async with make_bus(settings) as bus:
        check(await bus.ping(), f"broker answers at {settings.broker_address}")
        present = set(await bus.channels())
        for channel in expected_channels(settings.queue_backend, settings.agents):
            check(channel in present, f"{'topic' if settings.queue_backend == 'kafka' else 'stream'} {channel}")
        # each kind of worker judged by its own heartbeat (Laddr: 30 s), and by its group on the broker
        presence = {p.name: p for p in await agent_presence(bus, settings.heartbeat_s)}
        for agent in settings.agents:
            seen = presence.get(agent)
            check(seen is not None and seen.alive, f"worker {agent}: " + (
                "missing" if seen is None else describe_presence(seen)))
        notes: set[str] = set()
        for agent in settings.agents:
            started = time.perf_counter()
            try:
                response = await bus.request(agent, {"query": "test", "report": "Report on test. Key point: ok"}, timeout=timeout)
                # an answer is what the guide checks; Laddr on the NoOp LLM answers "incomplete"
                ok, detail = response.status != "error", f"{response.status} from {response.worker_id or 'a Laddr worker'}"
                notes.add(matching_note(response) or "")
            except Exception as exc:  # any failure is a miss on the checklist, not a crash
                ok, detail = False, str(exc)
            check(ok, f"round trip {agent}: {detail} in {(time.perf_counter() - started) * 1000:.1f} ms")
        for note in sorted(n for n in notes if n):
            click.echo(click.style(f"  note: {note}", fg="yellow"))
    if misses:
        raise Failed(f"{misses} check(s) failed")
    click.echo(click.style("all checks passed", fg="green"))


COMMANDS = [send, watch, verify]
