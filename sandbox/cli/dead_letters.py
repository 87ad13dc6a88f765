"""`laddr-sandbox dlq`: list, requeue (one or all) and drop dead letters, on either broker."""

from __future__ import annotations

import sys
from datetime import datetime

import click
import orjson

from sandbox.bus import Bus, DeadLetter, make_bus
from sandbox.cli.common import BadInput, Context, async_command
from sandbox.cli.tasks import current_bus_settings
from sandbox.export import letter_doc
from sandbox.protocol import agent_of_channel


def letter_lines(d: DeadLetter) -> list[str]:
    when = datetime.fromtimestamp(d.timestamp).strftime("%Y-%m-%d %H:%M:%S") if d.timestamp else "?"
    return [f"{d.id}  {when}  {agent_of_channel(d.source) or '?'}  deliveries {d.delivery_count}  "
            f"{d.source}  {d.reason}",
            "    " + d.raw.decode(errors="replace")[:200]]


async def find(bus: Bus, letter_id: str) -> DeadLetter:
    match = [d for d in await bus.dead_letters(100_000) if d.id == letter_id]
    if not match:
        raise BadInput(f"no dead letter {letter_id!r}; list them with: laddr-sandbox dlq")
    return match[0]


def confirmed(question: str) -> bool:
    """Ask on a terminal; without one (or on ctrl+d) the answer is no."""
    if not sys.stdin.isatty():
        return False
    try:
        return click.confirm(question, default=False)
    except click.Abort:
        return False


@click.command()
@click.option("--requeue", "requeue_id", metavar="ID", help="Send this dead letter back to its queue.")
@click.option("--requeue-all", is_flag=True, help="Send every dead letter back to its queue.")
@click.option("--drop", "drop_id", metavar="ID", help="Remove this dead letter for good (asks; --yes does not).")
@click.option("--yes", is_flag=True, help="Do not ask before --drop.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per dead letter (JSONL).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.pass_obj
@async_command
async def dlq(ctx: Context, requeue_id: str | None, requeue_all: bool, drop_id: str | None, yes: bool,
              as_json: bool, limit: int) -> None:
    """Messages that could not be handled: time, agent, reason, deliveries, source, payload.

    A requeued task keeps counting its deliveries (it gets the same number of attempts again).
    On Kafka a record cannot be deleted: --drop (and --requeue) write a skip record to
    laddr.dlq naming the letter, and the list leaves it out.

    \b
    Examples:
      laddr-sandbox dlq
      laddr-sandbox dlq --requeue 1764000000000-0
      laddr-sandbox dlq --requeue-all
      laddr-sandbox dlq --drop 0:12 --yes
    """
    if sum(map(bool, (requeue_id, requeue_all, drop_id))) > 1:
        raise BadInput("choose one of --requeue, --requeue-all, --drop")
    async with make_bus(await current_bus_settings(await ctx.runtime())) as bus:
        if requeue_id is not None:
            letter = await find(bus, requeue_id)
            await bus.requeue_dead_letter(letter)
            click.echo(f"{requeue_id}: sent back to {letter.source}")
            return
        if requeue_all:
            letters = await bus.dead_letters(100_000)
            for letter in letters:
                await bus.requeue_dead_letter(letter)
            click.echo(f"{len(letters)} dead letter(s) sent back to their queues")
            return
        if drop_id is not None:
            letter = await find(bus, drop_id)
            if not yes and not confirmed(f"drop {drop_id} ({letter.reason}) for good?"):
                raise BadInput("not dropped (say --yes to drop without asking)")
            await bus.drop_dead_letter(letter)
            click.echo(f"{drop_id}: dropped")
            return
        letters = await bus.dead_letters(limit)
    for d in letters:
        if as_json:
            click.echo(orjson.dumps(letter_doc(d)).decode())
        else:
            for line in letter_lines(d):
                click.echo(line)
    if not as_json:
        click.echo(f"{len(letters)} dead letter(s)")


COMMANDS = [dlq]
