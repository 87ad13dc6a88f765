"""Numbers and tables: percentiles, the median of repeated runs, plain-text tables.

Every figure is measured `repeats` times; a table shows the median over the
runs of each run's p50 and p99 (so one noisy run on two shared cores does not
make the figure), the spread of the run medians, and the target it is checked
against. Ratios (Laddr vs sandbox) are taken per run, from requests
interleaved in that run, and their median shown.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; nan for no values."""
    if not values:
        return math.nan
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def median(values: Iterable[float]) -> float:
    data = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(data) if data else math.nan


@dataclass
class Runs:
    """One figure measured in several runs: each run is a list of samples (or one value)."""

    samples: list[list[float]] = field(default_factory=list)

    def add(self, run: Sequence[float] | float) -> None:
        self.samples.append([float(run)] if isinstance(run, (int, float)) else [float(v) for v in run])

    @property
    def p50s(self) -> list[float]:
        return [percentile(r, 50) for r in self.samples if r]

    @property
    def p99s(self) -> list[float]:
        return [percentile(r, 99) for r in self.samples if r]

    @property
    def p50(self) -> float:
        return median(self.p50s)

    @property
    def p99(self) -> float:
        return median(self.p99s)

    @property
    def spread(self) -> tuple[float, float]:
        p50s = self.p50s
        return (min(p50s), max(p50s)) if p50s else (math.nan, math.nan)

    @property
    def count(self) -> int:
        return sum(len(r) for r in self.samples)


def fmt(value: Any, digits: int | None = None) -> str:
    """Numbers for people: 3 significant digits, thousands separators, '—' for none."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float) and math.isnan(value):
        return "—"
    v = float(value)
    if digits is not None:
        return f"{v:,.{digits}f}"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    if a == 0:
        return "0"
    return f"{v:.3f}"


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: Any) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{self.title}: {len(cells)} cells for {len(self.columns)} columns")
        self.rows.append(list(cells))

    def note(self, text: str) -> None:
        self.notes.append(text)

    def cells(self) -> list[list[str]]:
        return [[fmt(c) for c in row] for row in self.rows]

    def render(self) -> str:
        cells = self.cells()
        widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(self.columns)]

        def line(parts: Sequence[str]) -> str:
            out = []
            for i, part in enumerate(parts):
                # the first column (a name) is left-aligned, numbers right-aligned
                out.append(part.ljust(widths[i]) if i == 0 else part.rjust(widths[i]))
            return "  ".join(out).rstrip()

        text = [f"== {self.title} ==", line(self.columns), line(["-" * w for w in widths])]
        text += [line(r) for r in cells]
        text += [f"  * {n}" for n in self.notes]
        return "\n".join(text)

    def markdown(self) -> str:
        cells = self.cells()
        out = [f"**{self.title}**", "", "| " + " | ".join(self.columns) + " |",
               "|" + "|".join("---" if i == 0 else "---:" for i in range(len(self.columns))) + "|"]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
        if self.notes:
            out.append("")
            out += [f"- {n}" for n in self.notes]
        return "\n".join(out)

    def to_json(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            if isinstance(v, float) and math.isnan(v):
                return None
            return v

        doc = asdict(self)
        doc["rows"] = [[clean(c) for c in row] for row in self.rows]
        return doc


def print_table(table: Table) -> None:
    print()
    print(table.render(), flush=True)


def dump_json(tables: list[Table], path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump([t.to_json() for t in tables], f, indent=2)


def verdict(value: float, target: float, higher_is_better: bool) -> str:
    """'met (2.3x)' / 'MISSED (0.4x)': how the value compares with its target."""
    if value is None or math.isnan(value):
        return "—"
    if higher_is_better:
        factor = value / target if target else math.inf
    else:
        factor = target / value if value else math.inf
    word = "met" if factor >= 1 else "MISSED"
    return f"{word} ({factor:.1f}x)" if factor < 100 else f"{word} ({factor:,.0f}x)"
