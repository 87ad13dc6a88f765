"""`laddr-sandbox`: run the stack, switch Redis <-> Kafka, send tasks, watch the broker.

Exit codes: 0 ok, 1 the thing failed, 2 bad usage or bad input.
"""

from __future__ import annotations

import logging
import os

import click

from sandbox import __version__
from sandbox.cli import dead_letters, project, resend_cmd, stack, tasks, trace_cmd
from sandbox.cli.common import BadInput, Context, async_command, expected_failures
from sandbox.protocol import BACKENDS


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--runtime", "runtime_kind", type=click.Choice(stack.RUNTIMES), envvar="LADDR_RUNTIME",
              help="Who runs the stack (default: the one running here, else auto).")
@click.option("--env-file", type=click.Path(dir_okay=False), envvar="LADDR_ENV_FILE", help="Settings file (default: ./.env).")
@click.option("--project", metavar="DIR", help="A Laddr project (laddr init) whose agents the stack runs; "
              "default: LADDR_PROJECT in .env, or this folder if it is one.")
@click.version_option(__version__, prog_name="laddr-sandbox")
@click.pass_context
def cli(ctx: click.Context, runtime_kind: str | None, env_file: str | None, project: str | None) -> None:
    """A local sandbox for Laddr multi-agent systems on Redis or Kafka.

    \b
    Start here:
      laddr-sandbox launch            the terminal UI (runs the stack)
      laddr-sandbox up --backend kafka
      laddr-sandbox verify            the migration guide's checks
    """
    if env_file and ctx.get_parameter_source("env_file") == click.core.ParameterSource.COMMANDLINE \
            and not os.path.isfile(env_file):
        raise BadInput(f"--env-file {env_file}: no such file")
    ctx.obj = Context(runtime_kind=runtime_kind, env_file=env_file, project=project)


@cli.command()
@click.option("--backend", type=click.Choice(BACKENDS), help="Broker to start on (default: from .env, else redis).")
@click.option("--runtime", "runtime_kind", type=click.Choice(stack.RUNTIMES),
              help="Who runs the stack (default: the one running here, else local).")
@click.option("--project", "project_dir", metavar="DIR", help="Run a Laddr project's own agents (made by `laddr init`).")
@click.pass_obj
def launch(ctx: Context, backend: str | None, runtime_kind: str | None, project_dir: str | None) -> None:
    """Open the terminal UI: it runs the stack, switches brokers, sends tasks, shows logs and messages.

    \b
    Example:
      laddr-sandbox launch --backend kafka
      laddr-sandbox launch --project ~/code/myproj
    """
    from sandbox.tui.app import run_tui

    expected_failures(lambda: stack.use_project(ctx, project_dir))
    settings = ctx.settings()
    expected_failures(lambda: run_tui(runtime_kind or ctx.runtime_kind, backend, settings))


for command in [*stack.COMMANDS, *tasks.COMMANDS, *project.COMMANDS, *trace_cmd.COMMANDS,
                *dead_letters.COMMANDS, *resend_cmd.COMMANDS]:
    cli.add_command(command)


def main() -> None:
    # Client libraries log their retries (e.g. while Kafka starts); the CLI says
    # what matters itself, so only the sandbox's own warnings reach stderr.
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    cli(prog_name="laddr-sandbox")


__all__ = ["cli", "main", "async_command"]
