"""Resumable runs: skip a finished job, resume an interrupted one from its last checkpoint.

A job's directory is named from its overrides, so re-running the same multirun command lands every
job in the directory it used before. What is there decides what happens:

* ``summary.json`` says completed or diverged: the result is final; the job is skipped.
* a ``checkpoints/last.ckpt`` (the run was killed, pre-empted or crashed): training resumes from it,
  and ``metrics.jsonl`` is cut back to the checkpoint's epoch so every row appears once.
* nothing: a fresh start.

A directory holding a run of a *different* config (see ``result_keys``) is never reused silently.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass
import zipfile
from pathlib import Path
from typing import Any

from critical_periods.record.jsonl import trim_rows
from critical_periods.record.layout import CHECKPOINT_DIR, LAST_CHECKPOINT, METRICS_FILE, STIFFNESS_FILE
from critical_periods.record.metric_names import EPOCH
from critical_periods.record.summary import FINISHED, Summary, load_summary
from critical_periods.record.result_keys import differing_keys

log = logging.getLogger(__name__)



class ResumeError(ValueError):
    """The run folder cannot be resumed as it is (another config's run, a corrupt checkpoint)."""


@dataclass
class ResumePoint:
    """Where a run starts: what its folder held, and the checkpoint to start from, after ``epoch``
    epochs: the job's own (``resumed``), or a copy of a branch point, a sweep sibling's state after
    ``branched_from`` epochs. All ``None``: a fresh start."""

    previous: Summary | None = None
    checkpoint: Path | None = None
    epoch: int | None = None
    branched_from: int | None = None
    resumed: bool = False

    @property
    def finished(self) -> bool:
        """The folder holds a final result: the job is skipped."""
        return self.previous is not None and self.previous.status in FINISHED


def resume_point(out_dir: Path, config: dict[str, Any]) -> ResumePoint:
    """What ``out_dir`` holds. Raises :class:`ResumeError` (one line) if the folder holds another
    config's run or a bad file."""
    try:
        previous = load_summary(out_dir)
    except ValueError as err:
        raise ResumeError(f"{err}; delete it to start this run over") from None
    if previous is None:
        return ResumePoint()
    check_same_run(previous, config, out_dir)
    checkpoint = last_checkpoint(out_dir)
    if checkpoint is None:
        return ResumePoint(previous)
    return ResumePoint(previous, checkpoint, checkpoint_epoch(checkpoint), previous.branched_from_epoch, resumed=True)


def check_same_run(previous: Summary, config: dict[str, Any], run_dir: Path) -> None:
    """Raise if ``run_dir`` holds a run whose result keys differ from ``config``'s."""
    differing = differing_keys(previous.config, config)
    if differing:
        shown = ", ".join(differing[:5]) + (", ..." if len(differing) > 5 else "")
        raise ResumeError(
            f"{run_dir} already holds a run with a different config (differs in: {shown}); "
            f"it is not overwritten. Give this run another directory (name=..., hydra.run.dir=... or "
            f"hydra.sweep.dir=...), or delete that one to start over."
        )


def last_checkpoint(run_dir: Path) -> Path | None:
    path = run_dir / CHECKPOINT_DIR / f"{LAST_CHECKPOINT}.ckpt"
    return path if path.exists() else None


def checkpoint_epoch(path: Path) -> int:
    """The last epoch fully trained when ``path`` was saved (Lightning stores the epoch it ended).
    Raises :class:`ResumeError` naming the file if it cannot be read."""
    try:
        import torch  # here: the summary-only paths (skipping a finished job) need no torch

        # weights_only: a checkpoint is data; Lightning's own loader reads it the same way.
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except (RuntimeError, OSError, EOFError, KeyError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        raise ResumeError(
            f"{path}: unreadable checkpoint ({type(err).__name__}); delete it to restart this run from epoch 0"
        ) from None


def trim_metrics(run_dir: Path, last_epoch: int | None) -> None:
    """Keep the metric rows of epochs up to ``last_epoch`` (all dropped for ``None``), atomically.

    Rows without an epoch (the ``final/*`` row) are dropped: they come after training, so a resumed
    run logs them again. A line that is not JSON (torn by a full disk or a kill mid-write) is dropped
    with a warning instead of blocking the resume."""
    dropped = trim_rows(run_dir / METRICS_FILE, lambda row: last_epoch is not None and isinstance(row.get(EPOCH), int)
                        and row[EPOCH] <= last_epoch)
    if dropped:
        log.info("dropped %d metric rows logged after the checkpoint", dropped)


def trim_stiffness(run_dir: Path, first_epoch: int) -> None:
    """Drop the rows of ``stiffness.jsonl`` from epochs >= ``first_epoch`` (all of them for 0),
    atomically: a resumed run logs those epochs again. A torn line is dropped with a warning."""
    trim_rows(Path(run_dir) / STIFFNESS_FILE, lambda row: isinstance(row.get(EPOCH), int) and row[EPOCH] < first_epoch)


def remove_partial_files(run_dir: Path) -> int:
    """Delete what a run was writing when it stopped: checkpoints not yet promoted (``*.pending``)
    and the temporary files of atomic writes. Never the record itself or ``last.ckpt``. Returns how
    many files went."""
    partial = [*Path(run_dir).glob(f"{CHECKPOINT_DIR}/*.pending"), *Path(run_dir).rglob(".*.tmp")]
    for path in partial:
        path.unlink(missing_ok=True)
    return len(partial)
