"""Fault injection on real brokers that the suite owns: it kills and restarts them.

Each backend gets one broker for the whole reliability session, on fixed ports
and a fixed data dir, so a scenario can kill -9 it and start it again where it
was. Every scenario records one Outcome (sent, answered, duplicated, lost);
they are printed as one table at the end of the run and written as JSON
(LADDR_RELIABILITY_JSON, default build/reliability-results.json under the rootdir).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from sandbox.config import Settings
from tests.reliability.harness import Broker, Outcome

RESULTS = pytest.StashKey[list[Outcome]]()


def _broker(backend: str) -> Iterator[Broker]:
    workdir = Path(tempfile.mkdtemp(prefix=f"laddr-rel-{backend}-"))
    broker = Broker(backend, workdir)
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_broker() -> Iterator[Broker]:
    yield from _broker("redis")


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Broker]:
    yield from _broker("kafka")


@pytest.fixture(params=["redis", "kafka"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def broker(backend: str, request: pytest.FixtureRequest) -> Broker:
    broker: Broker = request.getfixturevalue(f"{backend}_broker")
    if broker.proc is None or broker.proc.poll() is not None:  # a failed scenario left it down
        broker.start()
    return broker


def settings_on(broker: Broker, **overrides: object) -> Settings:
    base = Settings(queue_backend=broker.backend, env_file=None)
    key = "redis_url" if broker.backend == "redis" else "kafka_bootstrap"
    return replace(base, **{key: broker.address}, **overrides)


@pytest.fixture
def settings(broker: Broker) -> Settings:
    return settings_on(broker)


@pytest.fixture
def record(request: pytest.FixtureRequest):
    """record(outcome): print it now and keep it for the end-of-session table."""

    def add(outcome: Outcome) -> Outcome:
        request.config.stash.setdefault(RESULTS, []).append(outcome)
        print("\n" + outcome.line())
        return outcome

    return add


def results_path(config: pytest.Config) -> Path:
    configured = os.environ.get("LADDR_RELIABILITY_JSON")
    return Path(configured) if configured else Path(config.rootpath) / "build" / "reliability-results.json"


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    outcomes = config.stash.get(RESULTS, [])
    if not outcomes:
        return
    terminalreporter.section("reliability: tasks sent / answered / duplicated / lost")
    for outcome in outcomes:
        terminalreporter.write_line(outcome.line())
    from tests.reliability.report import totals

    terminalreporter.write_line(totals([asdict(o) for o in outcomes]))
    path = results_path(config)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([asdict(o) for o in outcomes], indent=2) + "\n")
        terminalreporter.write_line(f"written to {path}")
    except OSError as exc:
        terminalreporter.write_line(f"could not write {path}: {exc}")
