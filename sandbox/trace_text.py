"""A trace as text: the waterfall, the log lines, the responses (CLI `trace` and the TUI's trace screen)."""

from __future__ import annotations

import time
from datetime import datetime

import orjson

from sandbox.trace import Trace, TraceNode

STATUS_MARK = {"success": "✓", "error": "✗", "dead": "☠", "running": "…", "queued": "·", "unknown": "?"}


def clock(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%H:%M:%S.%f")[:-3] if ts else "—"


def ms(value: float | None) -> str:
    return f"{value:.1f} ms" if value is not None else "—"


def span(node: TraceNode) -> tuple[float | None, float | None]:
    start = node.published or node.received
    end = node.answered or max((d.done or 0 for d in node.deliveries), default=0) or None
    return start, end


def waterfall(trace: Trace, bar_width: int = 32) -> list[str]:
    """One line per task (indented by depth) with a bar over the trace's whole time span."""
    nodes = list(trace.root.walk())
    starts = [s for _, n in nodes if (s := span(n)[0])]
    ends = [e for _, n in nodes if (e := span(n)[1])]
    t0 = min(starts, default=None)
    t1 = max(ends + starts, default=None)
    if t0 is not None and not trace.finished:
        t1 = max(t1 or t0, time.time())
    total = max((t1 or 0) - (t0 or 0), 1e-3)
    rows = [f"{'task':<48} {'agent':<12} {'replica':<28} {'dlv':>3} {'published':>12} {'received':>12} "
            f"{'answered':>12} {'duration':>10}  status"]
    for depth, n in nodes:
        start, end = span(n)
        bar = [" "] * bar_width
        if t0 is not None and start is not None:
            a = int((start - t0) / total * (bar_width - 1))
            b = int(((end or t1 or start) - t0) / total * (bar_width - 1))
            for i in range(a, max(a, b) + 1):
                bar[i] = "█" if end else "░"
        label = ("  " * depth + ("└ " if depth else "") + n.task_id)[:48]
        rows.append(f"{label:<48} {(n.agent or '?'):<12} {(n.replica or '—')[:28]:<28} {n.delivery_count:>3} "
                    f"{clock(n.published):>12} {clock(n.received):>12} {clock(n.answered):>12} "
                    f"{ms(n.duration_ms):>10}  {STATUS_MARK.get(n.status, '?')} {n.status}"
                    + (f" ({n.dead_reason})" if n.dead_reason else ""))
        rows.append(f"{'':<48} |{''.join(bar)}|")
        for i, d in enumerate(n.deliveries if len(n.deliveries) > 1 else []):
            gone = "no answer: its replica died, so it was delivered again" if i < len(n.deliveries) - 1 \
                else "no answer yet"
            rows.append(f"{'':<48}   delivery {d.count} on {d.replica}: received {clock(d.received)}, "
                        f"{d.status or gone}"
                        + (f" {clock(d.done)}" if d.done else ""))
    return rows


def log_section(trace: Trace) -> list[str]:
    return [f"{line.replica}  {line.text}" for line in trace.logs] or ["(no log line names these tasks)"]


def response_section(trace: Trace) -> list[str]:
    out: list[str] = []
    for _, n in trace.root.walk():
        if n.response is not None:
            out.append(f"{n.task_id} ({n.agent or '?'}):")
            out.extend(orjson.dumps(n.response, option=orjson.OPT_INDENT_2).decode().splitlines())
    return out or ["(no response yet)"]


def render(trace: Trace) -> list[str]:
    head = [f"trace of {trace.task_id} on {trace.backend}: {len(trace.nodes)} task(s), "
            f"{'finished' if trace.finished else 'still running'}"]
    head += [f"note: {m}" for m in trace.missing]
    return [*head, "", *waterfall(trace), "", "log lines:", *log_section(trace), "", "responses:",
            *response_section(trace)]
