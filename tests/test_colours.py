"""One replica colour table for `laddr-sandbox logs` (click) and the TUI's Logs tab (rich)."""

from __future__ import annotations

import click
from rich.style import Style

from sandbox.colours import REPLICA_COLOURS, replica_colour, replica_number


def test_numbered_replicas_take_the_colours_in_turn():
    colours = [replica_colour(f"researcher_worker-{n}") for n in range(1, len(REPLICA_COLOURS) + 2)]
    assert colours == [*REPLICA_COLOURS, REPLICA_COLOURS[0]]


def test_a_name_without_a_number_always_gets_the_same_colour():
    assert replica_number("kafka_controller") == 0
    assert replica_colour("kafka_controller") == replica_colour("kafka_controller") in REPLICA_COLOURS


def test_click_and_rich_both_know_every_colour():
    for colour in REPLICA_COLOURS:
        assert click.style("x", fg=colour) != "x"
        assert Style.parse(f"bold {colour}").color is not None
