"""Print the reliability suite's last results as a Markdown table (for docs/reliability.md).

    python -m pytest tests/reliability          # writes build/reliability-results.json
    python -m tests.reliability.report          # prints the "measured" table
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

DEFAULT = Path(__file__).resolve().parents[2] / "build" / "reliability-results.json"


def cell(row: dict) -> str:
    text = f"{row['sent']} sent, {row['answered']} answered, {row['duplicated']} dup, **{row['lost']} lost**"
    if row.get("redelivered"):
        text += f" ({row['redelivered']} redelivered)"
    return text


def render(rows: list[dict]) -> str:
    by_scenario: dict[str, dict[str, dict]] = defaultdict(dict)
    for row in rows:
        by_scenario[row["scenario"]][row["backend"]] = row
    lines = ["| scenario | Redis | Kafka |", "|---|---|---|"]
    for scenario, backends in by_scenario.items():
        lines.append(f"| {scenario} | {cell(backends['redis']) if 'redis' in backends else '—'} | "
                     f"{cell(backends['kafka']) if 'kafka' in backends else '—'} |")
    lines.append("")
    lines.append(totals(rows))
    return "\n".join(lines)


def totals(rows: list[dict]) -> str:
    """Total lost counts only unintended loss; a row that loses by design (the guide's Redis
    without persistence) is said apart, so a non-zero total always means a bug."""
    unintended = sum(r["lost"] for r in rows if not r.get("loss_intended"))
    intended = [r for r in rows if r.get("loss_intended")]
    line = f"Total lost: {unintended}."
    if intended:
        line += (f" Lost by design, not counted: {sum(r['lost'] for r in intended)} ("
                 + ", ".join(f"{r['scenario']}: {r['lost']}" for r in intended) + ").")
    return line


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else DEFAULT
    if not path.exists():
        print(f"error: {path} not found: run `python -m pytest tests/reliability` first", file=sys.stderr)
        return 2
    print(render(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
