"""Per agent: the stream or topic, what waits on it and which consumer owns what; tasks in and
answered per second and a trend of what waits, with the CLI's meaning (sandbox/rates.py)."""

from __future__ import annotations

import time

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.timer import Timer
from textual.widgets import DataTable, Label, Static

from sandbox.bus import QueueStats
from sandbox.rates import Rate, Rates, sparkline
from sandbox.tui.reporting import ErrorOnce, describe
from sandbox.tui.stack import stack_of

# What matters most first, so that 80 columns show it; the topic (long, and the agent's name
# says it) comes last and scrolls into view.
COLUMNS = ("Agent / consumer", "Lag", "Pending", "In/s", "Answ/s", "Waiting", "Owns / idle", "Parts",
           "Length", "Topic / stream")
TREND_WIDTH = 10  # samples shown (one per refresh): the last 20 s at the default 2 s
RATE_SPAN_S = 5.0  # the CLI's `status --watch 2` span: rates over the last samples within 5 s


def rate_cells(rate: Rate | None, trend: str = "") -> tuple[Text | str, ...]:
    if rate is None:
        return ("", "", "")
    return (Text(f"{rate.in_per_s:.1f}", justify="right"), Text(f"{rate.answered_per_s:.1f}", justify="right"),
            Text(trend, style="cyan"))


def number(value: int, warn: bool = True) -> Text:
    """Right-aligned; a waiting count above zero is yellow so it stands out."""
    return Text(f"{value:,}", style="yellow" if warn and value > 0 else "", justify="right")


def rows_for(stats: QueueStats, rate: Rate | None = None, trend: str = "") -> list[tuple[Text | str, ...]]:
    """The agent's row, then one row per consumer under it."""
    if not stats.exists:
        return [(Text(stats.agent, style="bold"), "", "", "", "", "", Text("missing", style="red"), "-", "",
                 stats.channel)]
    parts = "-" if stats.partitions is None else str(stats.partitions)
    idle = set(stats.idle_consumers)
    count = len(stats.consumers)
    consumers = f"{count} consumer{'s' if count != 1 else ''}" + (f", {len(idle)} idle" if idle else "")
    if stats.rebalancing:
        consumers += ", rebalancing"
    rows: list[tuple[Text | str, ...]] = [
        (
            Text(stats.agent, style="bold"),
            number(stats.lag),
            number(stats.pending),
            *rate_cells(rate, trend),
            Text(consumers, style="yellow" if idle else "dim"),
            parts,
            number(stats.length, warn=False),
            stats.channel,
        )
    ]
    for consumer in stats.consumers:
        if stats.partitions is None:
            owns = Text(f"idle {consumer.idle_ms / 1000:.0f} s" if consumer.idle_ms is not None else "", style="dim")
        elif consumer.name in idle:
            owns = Text("idle: no partition", style="bold yellow")
        else:
            owns = Text(",".join(str(p) for p in sorted(consumer.partitions)))
        rows.append((f"  └ {consumer.name}", "", number(consumer.pending), "", "", "", owns, "", "", ""))
    return rows


def partitions_text(health: list) -> Text:
    """Per replicated partition (a Kafka cluster): leader and in-sync replicas; the hurt ones flagged."""
    text = Text()
    for h in health:
        if len(h.replicas) > 1 or not h.healthy:
            style = "bold red" if h.offline or h.below_min_isr else "yellow" if h.under_replicated else "dim"
            text.append(("⚠ " if not h.healthy else "  ") + h.describe() + "\n", style=style)
    return text


def idle_warning(stats: list[QueueStats]) -> str:
    lines = []
    for s in stats:
        if s.idle_consumers:
            lines.append(
                f"⚠ {s.agent}: {len(s.consumers)} consumers for {s.partitions} partitions — "
                f"{len(s.idle_consumers)} idle ({', '.join(s.idle_consumers)}); scale down or add partitions"
            )
    return "\n".join(lines)


class QueuesView(Vertical):
    """Queue depth, lag and partition ownership, refreshed every 2 s."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._errors = ErrorOnce()
        self._warned: set[str] = set()
        self._timer: Timer | None = None
        self._busy = False
        self.rates = Rates(span_s=RATE_SPAN_S)
        self._rated: str | None = None  # the backend the samples come from

    def compose(self) -> ComposeResult:
        yield Static("", id="idle-warning")
        yield DataTable(id="queues-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="partition-health")
        yield Label("", id="queues-status", classes="status-line")

    def on_mount(self) -> None:
        table = self.query_one("#queues-table", DataTable)
        table.add_columns(*COLUMNS)
        self.query_one("#idle-warning").display = False

    def update_queues(self, stats: list[QueueStats], now: float | None = None, backend: str | None = None) -> None:
        """Show one read of the queues, taken at `now` (monotonic seconds) on `backend`."""
        if backend != self._rated:  # another broker counts from elsewhere: its rates start afresh
            self.rates, self._rated = Rates(span_s=RATE_SPAN_S), backend
        self.rates.add(stats, time.monotonic() if now is None else now)
        table = self.query_one("#queues-table", DataTable)
        row = table.cursor_row
        table.clear()
        rates = []
        for s in stats:
            rate = self.rates.rate(s.agent)
            trend = sparkline([x.waiting for x in self.rates.samples.get(s.agent, ())], TREND_WIDTH)
            table.add_rows(rows_for(s, rate, trend))
            rates += [rate] if rate is not None else []
        if 0 <= row < table.row_count:
            table.move_cursor(row=row, animate=False)
        warning = idle_warning(stats)
        banner = self.query_one("#idle-warning", Static)
        banner.update(warning)
        banner.display = bool(warning)
        waiting = sum(s.waiting for s in stats)
        in_s, done_s = sum(r.in_per_s for r in rates), sum(r.answered_per_s for r in rates)
        self.query_one("#queues-status", Label).update(
            f"{len(stats)} queues · {waiting:,} tasks waiting · {in_s:.1f} in/s · {done_s:.1f} answered/s "
            f"(last {RATE_SPAN_S:.0f} s)")
        # Say it once where people look, not only on this tab (live stacks only).
        idle_now = {s.agent for s in stats if s.idle_consumers}
        for agent in idle_now - self._warned if stack_of(self) is not None else ():
            self.app.notify(next(line for line in warning.splitlines() if f" {agent}:" in line), severity="warning")
        self._warned = idle_now

    def focus_content(self) -> None:
        """Focus the table (when the tab comes up)."""
        self.query_one("#queues-table", DataTable).focus()

    def action_refresh(self) -> None:
        self.refresh_stats()

    def start_refresh(self, every: float = 2.0) -> None:
        """Refresh now and every few seconds (again after a switch: only once a timer)."""
        self.refresh_stats()
        if self._timer is None:
            self._timer = self.set_interval(every, self.refresh_stats, name="refresh queues")

    @work(group="queues", exit_on_error=False)
    async def refresh_stats(self) -> None:
        """One read of the queues; skipped while the last one is still running."""
        stack = stack_of(self)
        if stack is None or stack.switching or stack.bus is None or self._busy:
            return
        self._busy = True
        bus = stack.bus
        try:
            names = await stack.agent_names()
            asked = time.monotonic()
            stats = await stack.queue_stats(names)
            # the counts are of some moment during the read: its middle errs least on a slow broker
            read_at = (asked + time.monotonic()) / 2
        except Exception as error:  # shown once; the next refresh tries again
            if stack.switching or stack.bus is not bus:
                return  # the broker went away on purpose (a switch): not news
            self._errors.failed(self, "Queues", error)
            self.query_one("#queues-status", Label).update(f"unavailable: {describe(error)}")
            return
        finally:
            self._busy = False
        self._errors.ok(self, "Queues")
        self.update_queues(stats, read_at, stack.backend)
        try:  # leaders and in-sync replicas: a cluster that lost brokers may not say
            health = await bus.partition_health([s.agent for s in stats])
        except Exception as error:
            health, note = [], Text(f"partition health unavailable: {describe(error)}", style="red")
        else:
            note = partitions_text(health)
        self.query_one("#partition-health", Static).update(note)
