"""Commands that run the stack: up, down, status, scale, restart, kill, logs, switch, partitions."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from pathlib import Path

import click
import orjson

from sandbox.bus import BusError, make_bus
from sandbox.cli.common import BadInput, Context, Failed, async_command, progress_line
from sandbox.bus.presence import known_agents, merge
from sandbox.cli.formatting import agent_json, agents_table, queue_lines, rate_json, rate_line, services_table
from sandbox.colours import replica_colour
from sandbox.config import MAX_KAFKA_BROKERS, MAX_REPLICAS, mask, read_env_file, write_env
from sandbox.protocol import BACKENDS, other_backend
from sandbox.rates import Rates
from sandbox.runtime.base import RuntimeFailure, StackNotRunning, agent_of_service
from sandbox.switch import PendingTasks, count_pending, switch_backend

RUNTIMES = ["auto", "local", "compose", "external"]
CONFIG_PREFIXES = ("QUEUE_", "REDIS_", "KAFKA_", "LADDR_", "API_", "SCALE_", "WORKER_")
SCALE_RE = re.compile(r"^([a-z0-9_-]+)=(\d+)$")


@click.command()
@click.option("--backend", type=click.Choice(BACKENDS), help="Broker to run (default: QUEUE_BACKEND from .env, else redis).")
@click.option("--runtime", "runtime_kind", type=click.Choice(RUNTIMES), help="Who runs the stack (default: the one running here, else auto).")
@click.option("--project", "project_dir", metavar="DIR", help="Run a Laddr project's own agents (made by `laddr init`).")
@click.option("--kafka-brokers", type=click.IntRange(1, MAX_KAFKA_BROKERS), metavar="N",
              help="Kafka as a KRaft cluster of N nodes (kept as KAFKA_BROKERS in .env; default 1).")
@click.pass_obj
@async_command
async def up(ctx: Context, backend: str | None, runtime_kind: str | None, project_dir: str | None,
             kafka_brokers: int | None) -> None:
    """Start the stack (broker, api, the agents' workers) and wait until every worker is ready.

    The agents are the five examples, or with --project (or LADDR_PROJECT in .env)
    those of your Laddr project, each run as its own `python -m agents.<name>`.

    \b
    Example:
      laddr-sandbox up --backend kafka --runtime local
      laddr-sandbox up --project ~/code/myproj
    """
    use_project(ctx, project_dir, say_notes=False)  # said after the start: a failure stays one line
    if kafka_brokers:  # later commands here (status, kill, a plain `up`) see the same cluster
        ctx.kafka_brokers = kafka_brokers
        if (settings := ctx.settings()).env_file_writable and settings.env_file:
            write_env(Path(settings.env_file), {"KAFKA_BROKERS": str(kafka_brokers)})
    runtime = await ctx.runtime(runtime_kind or ctx.runtime_kind or "auto", backend=backend, say=True)
    backend = backend or runtime.settings.queue_backend
    click.echo(f"starting the stack on {backend} ({runtime.name} runtime)…", err=True)
    await runtime.up(backend, progress_line)
    settings = runtime.bus_settings(backend)
    click.echo(f"up: {backend} at {settings.broker_address}; api http://{settings.api_host}:{settings.api_port}")
    say(runtime.settings.notes)


def say(notes: tuple[str, ...]) -> None:
    for note in notes:
        click.echo(f"note: {note}", err=True)


def use_project(ctx: Context, project_dir: str | None, say_notes: bool = True) -> None:
    """--project DIR for this and later commands here: recorded as LADDR_PROJECT in the sandbox's .env."""
    if project_dir:
        ctx.project = project_dir
    settings = ctx.settings()
    if say_notes:
        say(settings.notes)
    if project_dir and settings.env_file_writable and settings.env_file:
        write_env(Path(settings.env_file), {"LADDR_PROJECT": str(settings.project)})


@click.command()
@click.pass_obj
@async_command
async def down(ctx: Context) -> None:
    """Stop everything the sandbox started; nothing is left running.

    \b
    Example:
      laddr-sandbox down
    """
    runtime = await ctx.runtime()
    if await runtime.current_backend() is not None:
        with contextlib.suppress(BusError, RuntimeFailure):  # a broker already gone cannot be asked
            if waiting := await count_pending(runtime):
                click.echo(f"{sum(waiting.values())} task(s) wait unanswered ("
                           + ", ".join(f"{a}: {n}" for a, n in waiting.items())
                           + "); they stay on the broker's disk and are answered after the next up", err=True)
    await runtime.down(progress_line)
    click.echo("down")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON document for machines.")
@click.option("--watch", "watch_every", type=click.FloatRange(0.2, 3600), default=None, metavar="SECONDS",
              help="Every SECONDS: per agent tasks in/s, answered/s, waiting and its trend.")
@click.option("--count", type=click.IntRange(1), default=None, help="With --watch: stop after N lines per agent.")
@click.pass_obj
@async_command
async def status(ctx: Context, as_json: bool, watch_every: float | None, count: int | None) -> None:
    """Services, replicas, health and ports; partitions per worker (Kafka) or pending per consumer (Redis).

    \b
    Example:
      laddr-sandbox status
      laddr-sandbox status --watch 2       rates and trends, every 2 seconds
    """
    runtime = await ctx.runtime()
    backend = await runtime.current_backend()
    if backend is None:
        raise Failed(str(StackNotRunning(runtime.name)))
    if watch_every is not None:
        await watch_rates(runtime, backend, watch_every, count, as_json)
        return
    services = await runtime.services()
    async with make_bus(runtime.bus_settings(backend)) as bus:
        registry = await bus.agents()  # read once: it names agents and says who heartbeats
        names = await known_agents(bus, runtime.settings.agents, registry)
        stats = await bus.queue_stats(names)
        presence = merge(registry, stats, time.time(), runtime.settings.heartbeat_s)
        dead = await bus.dead_letters(1000)
        health = await bus.partition_health(names)
    replicas = {agent_of_service(s.name): s.desired for s in services if agent_of_service(s.name)}
    if as_json:
        click.echo(orjson.dumps({
            "runtime": runtime.name,
            "backend": backend,
            "broker": runtime.bus_settings(backend).broker_address,
            "services": [
                {"name": s.name, "kind": s.kind, "replicas": s.replicas_label, "state": s.state, "health": s.health,
                 "ports": s.ports, "note": s.note,
                 "processes": [{"name": r.name, "state": r.state, "pid": r.pid} for r in s.replicas]}
                for s in services
            ],
            "agents": [agent_json(p) for p in presence],
            "queues": [
                {"agent": q.agent, "channel": q.channel, "partitions": q.partitions, "lag": q.lag, "pending": q.pending,
                 "length": q.length, "idle_consumers": q.idle_consumers,
                 "consumers": [{"name": c.name, "pending": c.pending, "partitions": c.partitions} for c in q.consumers]}
                for q in stats
            ],
            "partitions": [{"topic": h.topic, "partition": h.partition, "leader": h.leader, "replicas": h.replicas,
                            "isr": h.isr, "under_replicated": h.under_replicated, "offline": h.offline}
                           for h in health],
            "dead_letters": len(dead),
        }, option=orjson.OPT_INDENT_2).decode())
        return
    settings = runtime.bus_settings(backend)
    click.echo(f"{runtime.name} runtime · backend {click.style(backend.upper(), bold=True)} · broker "
               f"{settings.broker_address} · api http://{settings.api_host}:{settings.api_port}\n")
    for line in services_table(services):
        click.echo(line)
    click.echo()
    for line in agents_table(presence):
        click.echo(line)
    click.echo()
    for q in stats:
        for line in queue_lines(q, replicas.get(q.agent), health):
            click.echo(line)
    if dead:
        click.echo(click.style(f"\ndead-letter queue: {len(dead)} message(s) — see: laddr-sandbox dlq", fg="red"))


async def watch_rates(runtime, backend: str, every: float, count: int | None, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    """`status --watch`: one line per agent each round, from the same queue stats as Queues."""
    rates, rounds = Rates(span_s=max(5.0, 2 * every)), 0
    async with make_bus(runtime.bus_settings(backend)) as bus:
        names = await known_agents(bus, runtime.settings.agents)
        while count is None or rounds <= count:
            rates.add(await bus.queue_stats(names), time.monotonic())
            if rounds:  # a rate needs two looks
                for rate in filter(None, map(rates.rate, names)):
                    click.echo(orjson.dumps(rate_json(rate)).decode() if as_json else rate_line(rate))
            rounds += 1
            await asyncio.sleep(every)


def parse_scale(specs: tuple[str, ...]) -> dict[str, int]:
    wanted = {}
    for spec in specs:
        match = SCALE_RE.match(spec)
        if not match:
            raise BadInput(f"expected SERVICE=N (e.g. researcher_worker=3), got {spec!r}")
        if int(match.group(2)) > MAX_REPLICAS:
            raise BadInput(f"{spec}: at most {MAX_REPLICAS} replicas per service on one machine")
        wanted[match.group(1)] = int(match.group(2))
    return wanted


@click.command()
@click.argument("specs", nargs=-1, required=True, metavar="SERVICE=N...")
@click.pass_obj
@async_command
async def scale(ctx: Context, specs: tuple[str, ...]) -> None:
    """Run N replicas of worker services (the guide's --scale).

    \b
    Example:
      laddr-sandbox scale coordinator_worker=3 researcher_worker=3 analyzer_worker=2
    """
    wanted = parse_scale(specs)
    runtime = await ctx.runtime()
    for service, replicas in wanted.items():
        await runtime.scale(service, replicas)
        click.echo(f"{service}: {replicas} replica(s)")
    backend = await runtime.current_backend()
    if backend == "kafka":
        async with make_bus(runtime.bus_settings(backend)) as bus:
            for q in await bus.queue_stats([agent_of_service(s) for s in wanted if agent_of_service(s)]):
                if q.partitions is not None and wanted[f"{q.agent}_worker"] > q.partitions:
                    click.echo(click.style(
                        f"! {q.agent}: {wanted[q.agent + '_worker']} replicas but {q.partitions} partitions — "
                        f"extra replicas stay idle; fix: laddr-sandbox partitions {q.agent} {wanted[q.agent + '_worker']}",
                        fg="yellow"), err=True)


@click.command()
@click.argument("agent")
@click.argument("count", type=click.IntRange(1, 1000))
@click.pass_obj
@async_command
async def partitions(ctx: Context, agent: str, count: int) -> None:
    """Grow an agent's Kafka topic to COUNT partitions (so more replicas share the work).

    \b
    Example:
      laddr-sandbox partitions researcher 12
    """
    runtime = await ctx.runtime()
    backend = await runtime.current_backend()
    if backend is None:
        raise Failed(str(StackNotRunning(runtime.name)))
    if backend != "kafka":
        raise BadInput(f"partitions exist on Kafka only; this stack runs on {backend}")
    async with make_bus(runtime.bus_settings(backend)) as bus:
        known = await known_agents(bus, runtime.settings.agents)
        if agent not in known:  # and nothing is created for it
            raise BadInput(f"unknown agent {agent!r}; known: {', '.join(known)}")
        (stats,) = await bus.queue_stats([agent])
        if stats.partitions is not None and count < stats.partitions:
            raise BadInput(f"laddr.tasks.{agent} has {stats.partitions} partitions and Kafka cannot shrink a "
                           f"topic: ask for {stats.partitions} or more")
        now = await bus.add_partitions(agent, count)
    click.echo(f"laddr.tasks.{agent}: {now} partitions")


@click.command()
@click.argument("service")
@click.pass_obj
@async_command
async def restart(ctx: Context, service: str) -> None:
    """Restart every replica of a service.

    \b
    Example:
      laddr-sandbox restart researcher_worker
    """
    await (await ctx.runtime()).restart(service)
    click.echo(f"{service}: restarted")


@click.command()
@click.argument("service")
@click.option("--replica", type=click.IntRange(1, 64), default=1, show_default=True)
@click.pass_obj
@async_command
async def kill(ctx: Context, service: str, replica: int) -> None:
    """kill -9 one replica, to watch its tasks be redelivered (Kafka rebalance vs Redis reclaim).

    \b
    Example:
      laddr-sandbox kill researcher_worker --replica 2
    """
    await (await ctx.runtime()).kill_replica(service, replica)
    click.echo(f"{service}-{replica}: killed (the runtime restarts it)")


@click.command()
@click.argument("service")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("--tail", type=click.IntRange(0, 100_000), default=100, show_default=True, help="Lines from the end.")
@click.pass_obj
@async_command
async def logs(ctx: Context, service: str, follow: bool, tail: int) -> None:
    """Lines of every replica of a service, tagged by replica (like docker-compose logs).

    \b
    Example:
      laddr-sandbox logs researcher_worker -f --tail 20
    """
    async for line in (await ctx.runtime()).logs(service, tail=tail, follow=follow):
        click.echo(click.style(f"{line.replica:<22}|", fg=replica_colour(line.replica)) + " " + line.text)


@click.command()
@click.argument("backend", type=click.Choice(BACKENDS), required=False)
@click.option("--migrate", is_flag=True, help="Move tasks pending on the old broker to the new one.")
@click.option("--force", is_flag=True, help="Switch even though tasks are pending (they stay behind).")
@click.option("--keep-old", is_flag=True, help="Leave the old broker running (a fast switch back).")
@click.pass_obj
@async_command
async def switch(ctx: Context, backend: str | None, migrate: bool, force: bool, keep_old: bool) -> None:
    """Move the running stack to the other broker (or to BACKEND).

    Refuses while tasks are pending unless --migrate or --force.

    \b
    Examples:
      laddr-sandbox switch kafka --migrate
      laddr-sandbox switch redis
    """
    if migrate and force:
        raise BadInput("choose one of --migrate and --force")
    runtime = await ctx.runtime()
    current = await runtime.current_backend()
    if current is None:
        raise Failed(str(StackNotRunning(runtime.name)))
    target = backend or other_backend(current)
    try:
        report = await switch_backend(runtime, target, migrate=migrate, force=force, keep_old=keep_old,
                                      progress=progress_line)
    except PendingTasks as exc:
        raise Failed(str(exc)) from None
    click.echo(report.summary())
    if report.moved:
        for agent, count in report.per_agent.items():
            click.echo(f"  {agent}: {count} task(s) moved")


@click.command()
@click.pass_obj
@async_command
async def pending(ctx: Context) -> None:
    """Tasks not yet answered on the current broker, per agent.

    \b
    Example:
      laddr-sandbox pending
    """
    counts = await count_pending(await ctx.runtime())
    for agent, count in counts.items():
        click.echo(f"{agent}: {count}")
    click.echo(f"total: {sum(counts.values())}")


@click.command(name="config")
@click.pass_obj
def show_config(ctx: Context) -> None:
    """The settings in effect (.env overlaid by the environment), secrets masked.

    \b
    Example:
      laddr-sandbox config
    """
    settings = ctx.settings()
    path = settings.env_file
    values = read_env_file(path) if path else {}
    click.echo(f"# from {path if path and path.exists() else 'defaults (no .env)'} and the environment")
    for key in sorted(set(values) | {k for k in os.environ if k.startswith(CONFIG_PREFIXES)}):
        value = os.environ.get(key, values.get(key, ""))
        click.echo(f"{key}={mask(key, value)}")
    click.echo(f"# in effect: backend {settings.queue_backend}, broker {mask('URL', settings.broker_address)}")


COMMANDS = [up, down, status, scale, partitions, restart, kill, logs, switch, pending, show_config]
