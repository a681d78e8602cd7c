"""Signals named in a config (``TRAIN.PREEMPT_SIGNALS``): one parser for the config check, the
trainer, the launcher and the DataLoader workers."""

import signal

__all__ = ["signal_number"]


def signal_number(name: str) -> int:
    """The number of a signal given by name (``"SIGTERM"``, any case).

    Raises:
        ValueError: no such signal on this system.
    """
    try:
        return int(signal.Signals[str(name).upper()])
    except KeyError:
        raise ValueError(f"unknown signal {name!r}") from None
