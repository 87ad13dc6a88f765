"""Commands on a user's own Laddr project: `migrate kafka|redis --project DIR [--write]`, `check --project DIR`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click
import orjson

from sandbox.cli.common import BadInput, Failed, expected_failures
from sandbox.protocol import BACKENDS
from sandbox.project.errors import ProjectError


@click.command()
@click.argument("target", type=click.Choice(["kafka", "redis"]))
@click.option("--project", "project_dir", envvar="LADDR_PROJECT", required=True, metavar="DIR",
              help="The Laddr project's folder (made by `laddr init`); default: $LADDR_PROJECT.")
@click.option("--write", is_flag=True, help="Apply the changes (keeping the originals for `migrate redis`).")
def migrate(target: str, project_dir: str, write: bool) -> None:
    """The migration guide's changes to a Laddr project's .env, docker-compose.yml, requirements.txt.

    Without --write it prints them as a unified diff and changes nothing. With
    --write it applies them; `migrate kafka --write` keeps each original in
    .laddr-sandbox/migrate/ in the project, and `migrate redis --write` restores
    them byte for byte (or, without a backup, applies the guide's rollback).

    \b
    Example:
      laddr-sandbox migrate kafka --project ~/code/myproj            # the diff
      laddr-sandbox migrate kafka --project ~/code/myproj --write    # apply it
      laddr-sandbox migrate redis --project ~/code/myproj --write    # roll back
    """
    from sandbox.project import migrate as m
    from sandbox.project.layout import LaddrProject

    try:
        project = LaddrProject.open(project_dir)
        plan = m.plan(project, target)
    except ProjectError as exc:
        raise BadInput(str(exc)) from None
    for note in plan.notes:
        click.echo(f"note: {note}", err=True)
    if not plan.changed:
        click.echo(f"nothing to change: {project.root} is already set up for {target}")
        return
    if not write:
        click.echo(plan.diff(), nl=False)
        for change in plan.changed:
            for note in change.notes:
                click.echo(f"note: {change.name}: {note}", err=True)
        names = ", ".join(c.name for c in plan.changed)
        click.echo(f"would change {names} in {project.root}; run again with --write to apply", err=True)
        return
    try:
        written = m.apply(plan)
    except OSError as exc:
        raise Failed(f"could not write {getattr(exc, 'filename', '') or 'the project files'}: "
                     f"{exc.strerror or exc}") from None
    for change in written:
        click.echo(f"wrote {change.path}{_how(project, change, target)}")
        for note in change.notes:
            if not note.startswith("restored from"):
                click.echo(f"note: {change.name}: {note}", err=True)


def _how(project, change, target: str) -> str:
    from sandbox.project.migrate import backup_path

    if target == "kafka":
        return f" (original kept in {backup_path(project, change.path).relative_to(project.root)})"
    if change.how == "backup":
        return " (restored from its backup, byte for byte)"
    return " (the guide's rollback, by transformation)"


@click.command()
@click.option("--project", "project_dir", envvar="LADDR_PROJECT", required=True, metavar="DIR",
              help="The Laddr project's folder (made by `laddr init`); default: $LADDR_PROJECT.")
@click.option("--backend", "backends", type=click.Choice(BACKENDS), multiple=True,
              help="Measure only this broker (repeatable; default: both).")
@click.option("--rounds", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="Round trips per agent (one after another).")
@click.option("--burst", type=click.IntRange(0, 10_000), default=10, show_default=True,
              help="Tasks sent at once per agent, for tasks/s.")
@click.option("--loss-tasks", type=click.IntRange(2, 10_000), default=20, show_default=True,
              help="Tasks queued before the kill -9.")
@click.option("--json", "as_json", is_flag=True, help="The report as one JSON document.")
@click.option("--markdown", "markdown_file", type=click.Path(dir_okay=False), help="Also write the report as Markdown.")
def check(project_dir: str, backends: tuple[str, ...], rounds: int, burst: int, loss_tasks: int,
          as_json: bool, markdown_file: str | None) -> None:
    """A readiness report: the project's agents on Redis and on Kafka, side by side.

    For each broker it starts a scratch stack of the project's real Laddr workers
    (beside, never instead of, a stack you run), then measures per agent: answers
    matched, round trip p50/p99, tasks/s; what a kill -9 of a busy worker loses
    (Laddr's own worker and, for comparison, the sandbox's); registry visibility;
    and lists the blockers found, each with what to do.

    \b
    Example:
      laddr-sandbox check --project ~/code/myproj
      laddr-sandbox check --project . --json > readiness.json
      laddr-sandbox check --project . --markdown READINESS.md
    """
    from sandbox.config import ConfigError, load_settings, with_project
    from sandbox.project.check import run_check
    from sandbox.project.report import render_markdown, render_text

    try:
        settings = with_project(load_settings(), project_dir)
    except ConfigError as exc:
        raise BadInput(str(exc)) from None
    chosen = list(dict.fromkeys(backends)) or list(BACKENDS)
    say = (lambda line: click.echo(f"  · {line}", err=True))
    report = expected_failures(lambda: asyncio.run(run_check(settings, chosen, say, rounds=rounds, burst=burst,
                                                             loss_tasks=loss_tasks)))
    if markdown_file:
        Path(markdown_file).write_text(render_markdown(report), encoding="utf-8")
    click.echo(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2).decode() if as_json else render_text(report),
               nl=not as_json)
    if report.problems:
        raise Failed("; ".join(f"{b}: {why}" for b, why in report.problems.items()))


COMMANDS = [migrate, check]
