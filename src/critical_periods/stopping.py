"""A pending stop (SIGTERM from SLURM pre-emption, SIGINT): long computations ask here between their
chunks or iterations and give way, so a pre-empted job still saves its checkpoint in time.

The signal side (who sets the flag) is the training entry point's; probes only call
:func:`raise_if_stop_requested`.
"""

from __future__ import annotations

import threading

_requested = threading.Event()


class StopRequested(Exception):
    """Raised inside a long computation when the process has been asked to stop."""


def request_stop() -> None:
    _requested.set()


def clear_stop() -> None:
    _requested.clear()


def stop_requested() -> bool:
    return _requested.is_set()


def raise_if_stop_requested() -> None:
    """Call between chunks/iterations of anything that can take longer than a few seconds."""
    if _requested.is_set():
        raise StopRequested("stop requested (signal received)")
