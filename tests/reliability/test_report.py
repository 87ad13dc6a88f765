"""The reliability report's totals (tests/reliability/report.py): pure logic, no broker."""

from tests.reliability.report import render, totals


def row(scenario: str, backend: str, lost: int, **extra) -> dict:
    return {"scenario": scenario, "backend": backend, "sent": 10, "answered": 10 - lost, "duplicated": 0,
            "lost": lost, **extra}


def test_total_lost_leaves_out_the_row_that_loses_by_design_and_names_it() -> None:
    rows = [row("1 kill -9", "redis", 0), row("1 kill -9", "kafka", 0),
            row("r1 redis restart no persistence", "redis", 202, loss_intended=True),
            row("r1 redis restart AOF everysec", "redis", 0)]
    assert totals(rows) == "Total lost: 0. Lost by design, not counted: 202 (r1 redis restart no persistence: 202)."
    assert render(rows).endswith(totals(rows))


def test_an_unintended_loss_is_counted() -> None:
    assert totals([row("2 sigterm", "kafka", 3), row("r1 redis restart no persistence", "redis", 5,
                                                     loss_intended=True)]).startswith("Total lost: 3.")
    assert totals([row("2 sigterm", "kafka", 1)]) == "Total lost: 1."  # results of older runs: no flag, counted
