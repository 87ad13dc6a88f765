"""The one error type of the broker launchers."""


class BrokerError(RuntimeError):
    """A broker cannot be fetched, prepared or started.

    The message is one line a developer can act on (what failed, what to do).
    """
