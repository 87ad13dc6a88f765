"""The replica colours both faces use: `laddr-sandbox logs` (click) and the TUI's Logs tab (rich).

Click and rich know the same colour names, so one table serves both and a
replica has the same colour in the terminal and in the UI.
"""

from __future__ import annotations

# Replica tags cycle through these, so `-1`, `-2`, `-3` are told apart at a glance.
REPLICA_COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "red", "bright_cyan", "bright_magenta")


def replica_number(replica: str) -> int:
    """The N of `<service>-N`; 0 when the name has no number."""
    tail = replica.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def replica_colour(replica: str) -> str:
    """Numbered replicas take the colours in turn; any other name always gets the same one."""
    number = replica_number(replica)
    if number:
        return REPLICA_COLOURS[(number - 1) % len(REPLICA_COLOURS)]
    return REPLICA_COLOURS[sum(replica.encode()) % len(REPLICA_COLOURS)]
