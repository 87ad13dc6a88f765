"""The readiness report of `laddr-sandbox check`: the two brokers side by side, then the
blockers found, each with what to do about it. Text for people, JSON and Markdown for CI."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sandbox.project.readiness import AgentFigures, LossFigures


@dataclass(slots=True)
class Blocker:
    backend: str
    what: str
    fix: str


@dataclass(slots=True)
class Readiness:
    project: str
    agents: list[str]
    backends: list[str]
    figures: list[AgentFigures] = field(default_factory=list)
    losses: list[LossFigures] = field(default_factory=list)
    registry: dict[str, dict[str, str]] = field(default_factory=dict)  # backend -> agent -> what it shows
    blockers: list[Blocker] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)  # backend -> why it could not be measured

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        for loss, raw in zip(self.losses, doc["losses"]):
            raw["lost"] = loss.lost
        return doc


def find_blockers(report: Readiness, requirements: str) -> list[Blocker]:
    found: list[Blocker] = []
    for f in report.figures:
        if f.backend == "kafka" and f.matched_by_job_id:
            found.append(Blocker(
                "kafka",
                f"{f.agent}: Laddr 0.9.6's Kafka worker publishes answers with no key and no task_id "
                f"({f.matched_by_job_id} of {f.matched} here); Laddr's own client (KafkaBus.wait_for_response, "
                "which Laddr's API uses) matches on task_id and never sees them: every request times out",
                "make the worker's answer carry the task id (publish {'task_id': task_id, **result} in "
                "WorkerRunner) or upgrade Laddr once it does; the sandbox matched them by the job_id it puts in "
                "the payload, which Laddr's Agent echoes",
            ))
        if f.sent and not f.matched:
            found.append(Blocker(f.backend, f"{f.agent}: no answer to {f.sent} request(s)"
                                 + (f" ({f.error})" if f.error else ""),
                                 f"read its log: laddr-sandbox logs {f.agent}_worker"))
    for loss in report.losses:
        if loss.lost and loss.worker.startswith("laddr"):
            found.append(Blocker(
                loss.backend,
                f"{loss.worker}: a kill -9 while busy lost {loss.lost} of {loss.sent} tasks — Laddr 0.9.6 "
                "acknowledges a task when it reads it (Redis XACK+XDEL, Kafka commit after the fetch): at-most-once",
                "acknowledge after publishing the answer (the sandbox's worker does: at-least-once), or accept "
                "that a crash loses what the worker held",
            ))
    if "kafka" in report.backends and "aiokafka>=0.11" not in requirements.replace(" ", "") \
            and "laddr[kafka]" not in requirements:
        found.append(Blocker("kafka", "requirements.txt asks for neither aiokafka>=0.11.0 nor laddr[kafka] "
                             "(the guide's prerequisite)",
                             "laddr-sandbox migrate kafka --project DIR --write adds it"))
    for backend, agents in report.registry.items():
        if backend == "kafka" and any("not in laddr.registry" in v for v in agents.values()):
            found.append(Blocker("kafka", "Laddr keeps its Kafka registry in memory: other processes see its "
                                 "agents only by their topic names, with no role, goal or heartbeat",
                                 "list agents by topic (laddr-sandbox status does), or keep a registry topic"))
    return found


def _cell_answers(f: AgentFigures | None) -> str:
    if f is None:
        return "-"
    text = f"{f.matched}/{f.sent}"
    if f.matched_by_job_id:
        text += f" ({f.matched_by_job_id} by job_id only)"
    if f.statuses:
        text += " " + ",".join(f"{k} {v}" for k, v in sorted(f.statuses.items()))
    return text


def _cell_time(f: AgentFigures | None) -> str:
    if f is None or f.p50_ms is None:
        return "-"
    return f"{f.p50_ms:.1f} ms ({f.p99_ms:.1f})"


def _cell_rate(f: AgentFigures | None) -> str:
    return "-" if f is None or f.tasks_per_s is None else f"{f.tasks_per_s:.1f}"


def _cell_loss(loss: LossFigures | None) -> str:
    if loss is None:
        return "-"
    text = f"{loss.sent} sent, {loss.answered} answered, {loss.lost} lost"
    return text + (f" ({loss.error})" if loss.error else "")


def rows(report: Readiness) -> list[list[str]]:
    """The table: one block per agent, then the kill -9 losses."""
    by = {(f.agent, f.backend): f for f in report.figures}
    table: list[list[str]] = []
    for agent in report.agents:
        cells = [
            ("answers matched", _cell_answers),
            ("round trip p50 (p99)", _cell_time),
            ("tasks/s (burst)", _cell_rate),
        ]
        for i, (label, cell) in enumerate(cells):
            table.append([agent if i == 0 else "", label, *(cell(by.get((agent, b))) for b in report.backends)])
        table.append(["", "registry", *(report.registry.get(b, {}).get(agent, "-") for b in report.backends)])
    workers = sorted({loss.worker for loss in report.losses})
    losses = {(loss.worker, loss.backend): loss for loss in report.losses}
    for i, worker in enumerate(workers):
        table.append(["kill -9" if i == 0 else "", worker,
                      *(_cell_loss(losses.get((worker, b))) for b in report.backends)])
    return table


def render_text(report: Readiness) -> str:
    header = ["agent", "", *report.backends]
    table = [header, *rows(report)]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = [f"readiness of {report.project} ({', '.join(report.agents)})", ""]
    for n, row in enumerate(table):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    for backend, why in report.problems.items():
        lines.append(f"! {backend}: not measured: {why}")
    lines.append("")
    lines.append(f"blockers ({len(report.blockers)}):" if report.blockers else "blockers: none found")
    for b in report.blockers:
        lines.append(f"  [{b.backend}] {b.what}")
        lines.append(f"      what to do: {b.fix}")
    return "\n".join(lines) + "\n"


def render_markdown(report: Readiness) -> str:
    header = ["agent", "", *report.backends]
    out = [f"# Readiness of `{report.project}`", "", "| " + " | ".join(header) + " |",
           "|" + "---|" * len(header)]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows(report)]
    out += ["", "## Blockers", ""]
    out += [f"- **{b.backend}**: {b.what}. *What to do:* {b.fix}." for b in report.blockers] or ["None found."]
    for backend, why in report.problems.items():
        out.append(f"- **{backend}** not measured: {why}")
    return "\n".join(out) + "\n"
