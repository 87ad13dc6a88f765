"""What every command shares: the context, async running, and errors as one line + exit code."""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import click

from sandbox.agents import AgentNotFound
from sandbox.brokers.errors import BrokerError
from sandbox.bus import BusError, MessageTooLarge, RequestTimeout
from sandbox.config import ConfigError, Settings, load_settings, with_project
from sandbox.runtime.base import Runtime, RuntimeFailure, UnknownService

T = TypeVar("T")

# Exit codes: 0 ok, 1 the thing failed, 2 bad usage or bad input.
FAILED, BAD_INPUT = 1, 2


class BadInput(click.ClickException):
    """Bad input from the user (exit 2): one line that says what to do, no usage dump."""

    exit_code = BAD_INPUT


class Failed(click.ClickException):
    """The thing failed (exit 1)."""

    exit_code = FAILED


@dataclass
class Context:
    runtime_kind: str | None  # None: whichever runtime has a stack up here
    env_file: str | None
    project: str | None = None  # a Laddr project's folder (--project); else .env's LADDR_PROJECT
    kafka_brokers: int | None = None  # `up --kafka-brokers N`; else .env's KAFKA_BROKERS

    def settings(self) -> Settings:
        try:
            settings = with_project(load_settings(self.env_file), self.project)
        except ConfigError as exc:
            raise BadInput(str(exc)) from None
        return replace(settings, kafka_brokers=self.kafka_brokers) if self.kafka_brokers else settings

    async def runtime(self, kind: str | None = None, *, backend: str | None = None, say: bool = False) -> Runtime:
        """The runtime asked for, else the one with a stack up here, else auto's pick (`say`: why not Compose)."""
        from sandbox.runtime import choose_runtime

        return choose_runtime(kind or self.runtime_kind, self.settings(), backend=backend,
                              say=progress_line if say else lambda _: None)


def run(coro: Awaitable[T]) -> T:
    """Run a command's coroutine, turning expected failures into one clear line."""
    return expected_failures(lambda: asyncio.run(coro))  # type: ignore[arg-type]


def expected_failures(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except (ConfigError, UnknownService, AgentNotFound, MessageTooLarge) as exc:
        raise BadInput(str(exc)) from None
    except (RequestTimeout, BusError, RuntimeFailure, BrokerError) as exc:
        raise Failed(str(exc)) from None


def async_command(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return run(fn(*args, **kwargs))

    return wrapper


def progress_line(message: str) -> None:
    click.echo(click.style("  · ", fg="cyan") + message, err=True)
