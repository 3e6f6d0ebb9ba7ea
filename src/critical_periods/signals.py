"""SIGTERM (SLURM pre-emption, ``kill``) and SIGINT (Ctrl+C) during a run: request a stop
(``critical_periods.stopping``) instead of dying mid-write, so training ends at the next safe point,
the record says ``interrupted`` and the process exits ``128 + signal`` (143 for SIGTERM), as a shell
reports a process killed by that signal.

A handler someone else installed is left alone: under submitit, SIGTERM is submitit's (it bypasses it
and checkpoints + requeues on SIGUSR2, then exits), so its requeue keeps working. A second Ctrl+C
raises ``KeyboardInterrupt`` at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from critical_periods.stopping import request_stop, stop_requested

_received: list[int] = []


def received_signal() -> int | None:
    """The signal that asked this process to stop during the last ``stop_on_signals`` block."""
    return _received[-1] if _received else None


def exit_code(signum: int) -> int:
    """The exit status of a process stopped by ``signum``: 128 + its number, as shells report it.

    >>> exit_code(signal.SIGTERM)
    143
    """
    return 128 + int(signum)


def _handler(signum: int, frame: object) -> None:
    if signum == signal.SIGINT and stop_requested():
        raise KeyboardInterrupt
    _received.append(signum)
    request_stop()


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM/SIGINT request a stop (where their default handlers are in place)."""
    _received.clear()
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers
        return
    defaults = {signal.SIGTERM: signal.SIG_DFL, signal.SIGINT: signal.default_int_handler}
    previous = {sig: signal.getsignal(sig) for sig in defaults}
    ours = [sig for sig, default in defaults.items() if previous[sig] is default]
    for sig in ours:
        signal.signal(sig, _handler)
    try:
        yield
    finally:
        for sig in ours:
            signal.signal(sig, previous[sig])
