"""aiokafka's own log lines, made fit to read: one line per kind of connection error while the
broker is away (not ten a second), and a coordinator lookup retried at start said as a retry."""

from __future__ import annotations

import logging

from sandbox.bus.reconnect import RepeatFilter

_QUIET = RepeatFilter()
COORDINATOR_LOOKUP = "Group Coordinator Request failed: %s"  # aiokafka's ERROR while it looks again


class CoordinatorRetry(logging.Filter):
    """aiokafka logs a retriable coordinator lookup (Error 15 while a broker starts) as an ERROR,
    then retries: it is a retry at start, said once at INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == COORDINATOR_LOOKUP and record.args and getattr(record.args[0], "retriable", False):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = "group coordinator not available yet (%s); retrying, as at every start"
        return True


_RETRY = CoordinatorRetry()


def quiet_aiokafka() -> None:
    """One line per kind of aiokafka connection error while the broker is away, not ten a second;
    a coordinator lookup retried at start is no error."""
    for name in [n for n in logging.root.manager.loggerDict if n == "aiokafka" or n.startswith("aiokafka.")]:
        logger = logging.getLogger(name)
        if _RETRY not in logger.filters:
            logger.filters.insert(0, _RETRY)
        if _QUIET not in logger.filters:
            logger.addFilter(_QUIET)
