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

import json
import logging
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from critical_periods.metric_names import EPOCH
from critical_periods.atomic import write_text_atomic
from critical_periods.records import METRICS_FILE, Summary
from critical_periods.result_keys import differing_keys

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last"  # file stem; written by callbacks.checkpoint.ResumeCheckpoint


class ResumeError(ValueError):
    """The run folder cannot be resumed as it is (another config's run, a corrupt checkpoint)."""


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
        # weights_only: a checkpoint is data; Lightning's own loader reads it the same way.
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except (RuntimeError, OSError, EOFError, KeyError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        raise ResumeError(
            f"{path}: unreadable checkpoint ({type(err).__name__}); delete it to restart this run from epoch 0"
        ) from None


def _parse(line: str) -> dict[str, Any] | None:
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return row if isinstance(row, dict) else None


def trim_metrics(run_dir: Path, last_epoch: int | None) -> None:
    """Keep the metric rows of epochs up to ``last_epoch`` (all dropped for ``None``), atomically.

    Rows without an epoch (the ``final/*`` row) are dropped: they come after training, so a resumed
    run logs them again. A line that is not JSON (torn by a full disk or a kill mid-write) is dropped
    with a warning instead of blocking the resume."""
    path = run_dir / METRICS_FILE
    if not path.exists():
        return
    with open(path) as f:
        lines = [line if line.endswith("\n") else line + "\n" for line in f if line.strip()]
    parsed = [(line, _parse(line)) for line in lines]
    torn = sum(row is None for _, row in parsed)
    if torn:
        log.warning("%s: dropped %d unreadable line(s) (cut short by a kill or a full disk)", path, torn)
    kept = [] if last_epoch is None else [
        line for line, row in parsed
        if row is not None and isinstance(row.get(EPOCH), int) and row[EPOCH] <= last_epoch
    ]
    write_text_atomic(path, "".join(kept))
    if len(kept) != len(lines) - torn:
        log.info("dropped %d metric rows logged after the checkpoint", len(lines) - torn - len(kept))
