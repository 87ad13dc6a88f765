"""`python -m bench --smoke` end to end against real brokers: every table prints, every row has numbers.

Not a timed test: the figures are whatever this machine gives; only their
presence is checked (a benchmark that breaks shows up here, not its speed).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# the tables `python -m bench` prints, by the start of their titles
EXPECTED_TABLES = [
    "Request round trip, one at a time",
    "Laddr 0.9.6's Kafka client vs the sandbox's",
    "Sustained throughput through the five workers",
    "CPU per task while under that load",
    "Sandbox vs a bare-client ceiling",
    "CPU per task, sandbox vs ceiling",
    "Round trip split by side",
    "Live tap (watch) following the broker",
    "Cold `up` of the local stack",
    "Backend switch",
    "TUI ingest at 20,000/s",
    "TUI memory after",
]
NUMBER = re.compile(r"\d")


@pytest.mark.timeout(1500)
def test_bench_smoke_prints_every_table_with_numbers(tmp_path: Path) -> None:
    out_json = tmp_path / "tables.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "KAFKA_BOOTSTRAP", "QUEUE_BACKEND"))}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--json", str(out_json)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1400, stdin=subprocess.DEVNULL,
    )
    print(done.stdout)  # the tables, for whoever reads the test log
    assert done.returncode == 0, f"python -m bench --smoke exited {done.returncode}:\n{done.stderr[-4000:]}"
    for title in EXPECTED_TABLES:
        assert f"== {title}" in done.stdout, f"table {title!r} not printed:\n{done.stdout[-3000:]}"

    tables = json.loads(out_json.read_text())
    titles = [t["title"] for t in tables]
    for title in EXPECTED_TABLES:
        assert any(t.startswith(title) for t in titles), f"{title!r} missing from the JSON: {titles}"
    for table in tables:
        assert table["rows"], f"table {table['title']!r} has no rows"
        for row in table["rows"]:
            # a figure that could not be measured is NaN, written as null
            assert None not in row, f"{table['title']}: row {row[0]!r} has a missing figure: {row}"
            numbers = [c for c in row[1:] if isinstance(c, (int, float)) or NUMBER.search(str(c))]
            assert len(numbers) >= 2, f"{table['title']}: row {row[0]!r} has too few numbers: {row}"
