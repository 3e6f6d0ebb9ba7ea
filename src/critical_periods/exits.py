"""How a training entry point ends: the one mapping from what went wrong to an exit code and one
line on stderr, shared by ``train.run_job`` (one job) and the seeds launcher (a group of jobs).

0 done (or skipped); 2 bad input (``ConfigError``, ``ResumeError``; ``HYDRA_FULL_ERROR=1`` re-raises
for the traceback); 1 a full disk (the record says failed; the same command resumes once space is
freed); 128 + signal when stopped by a signal (143: SIGTERM); any other error propagates as a
traceback, and Hydra exits 1.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from collections.abc import Callable
from typing import TypeVar

from critical_periods.config.validation import ConfigError
from critical_periods.record.resume import ResumeError
from critical_periods.signals import exit_code, received_signal

T = TypeVar("T")


def lightning_sigterm(error: BaseException) -> int | None:
    """Lightning stops on SIGTERM itself too, even where another handler owns the signal (submitit)."""
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    return signal.SIGTERM if isinstance(error, SIGTERMException) else None


def with_exit_codes(work: Callable[..., T], *args, where: str, rerun: str = "it resumes") -> T:
    """``work(*args)``, its failures mapped to the exit codes above. ``where``: the folder the
    messages name; ``rerun``: what a re-run does ("it resumes", "each job resumes")."""
    try:
        return work(*args)
    except (ConfigError, ResumeError) as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        print(f"error: no space left on device for {where}: the run is recorded there as failed; free space "
              f"and run the same command again: {rerun} from its last good checkpoint", file=sys.stderr)
        raise SystemExit(1) from None
    except BaseException as err:
        from critical_periods.fitting import is_interruption  # torch and Lightning: only once a run failed

        signum = received_signal() or lightning_sigterm(err)
        if signum is not None and is_interruption(err):
            print(f"interrupted by {signal.Signals(signum).name}: {where}: {rerun} on re-run", file=sys.stderr)
            raise SystemExit(exit_code(signum)) from None
        raise
