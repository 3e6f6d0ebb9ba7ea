"""Resumable runs: skip a finished job, resume an interrupted one from its last checkpoint.

A job's directory is named from its overrides, so re-running the same multirun command lands every
job in the directory it used before. What is there decides what happens:

* ``summary.json`` says completed or diverged: the result is final; the job is skipped.
* a ``checkpoints/last.ckpt`` (the run was killed, pre-empted or crashed): training resumes from it,
  and ``metrics.jsonl`` is cut back to the checkpoint's epoch so no epoch is logged twice.
* nothing: a fresh start.

A directory holding a run of a *different* config is never reused silently: that is an error.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from critical_periods.records import METRICS_FILE, write_text_atomic

log = logging.getLogger(__name__)

FINISHED = ("completed", "diverged")
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last"  # file stem; written by callbacks.checkpoint.ResumeCheckpoint
# The parts of the config that decide a run's numbers (not where it writes or how it reports).
RESULT_KEYS = ("data", "model", "deficit", "optim", "schedule", "seed", "probes")


def result_config(config: dict[str, Any]) -> dict[str, Any]:
    return {key: config.get(key) for key in RESULT_KEYS}


def check_same_run(previous: dict[str, Any], config: dict[str, Any], run_dir: Path) -> None:
    """Raise if ``run_dir`` holds a run whose result-deciding config differs from ``config``."""
    old, new = result_config(previous.get("config", {})), result_config(config)
    if old != new:
        differing = sorted(key for key in RESULT_KEYS if old.get(key) != new.get(key))
        raise ValueError(
            f"{run_dir} already holds a run with a different config (differs in: {', '.join(differing)}); "
            f"it is not overwritten. Give this run another directory (name=..., hydra.run.dir=... or "
            f"hydra.sweep.dir=...), or delete that one to start over."
        )


def last_checkpoint(run_dir: Path) -> Path | None:
    path = run_dir / CHECKPOINT_DIR / f"{LAST_CHECKPOINT}.ckpt"
    return path if path.exists() else None


def checkpoint_epoch(path: Path) -> int:
    """The last epoch fully trained when ``path`` was saved (Lightning stores the epoch it ended)."""
    return int(torch.load(path, map_location="cpu", weights_only=False)["epoch"])


def trim_metrics(run_dir: Path, last_epoch: int | None) -> None:
    """Keep the metric rows up to ``last_epoch`` (all of them dropped for ``None``), atomically."""
    path = run_dir / METRICS_FILE
    if not path.exists():
        return
    with open(path) as f:
        rows = [line for line in f if line.strip()]
    kept = [] if last_epoch is None else [line for line in rows if json.loads(line).get("epoch", 0) <= last_epoch]
    write_text_atomic(path, "".join(kept))
    if len(kept) != len(rows):
        log.info("dropped %d metric rows logged after the checkpoint", len(rows) - len(kept))
