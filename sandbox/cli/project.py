"""Commands on a user's own Laddr project: `migrate kafka|redis --project DIR [--write]`."""

from __future__ import annotations

import click

from sandbox.cli.common import BadInput, Failed
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


COMMANDS = [migrate]
