"""The run record on disk: ``metrics.jsonl`` while training, ``summary.json`` at the end.

Analysis reads only these files, so it works offline and without a W&B account. Non-finite
numbers are written as ``null`` to keep every line strict JSON.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers.logger import Logger
from pytorch_lightning.utilities import rank_zero_only

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
STATUSES = ("completed", "diverged", "failed")


def _plain(value: Any) -> Any:
    """A JSON-safe python value: tensors become numbers, NaN and inf become None."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_text_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path`` and rename it over: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """``payload`` as strict JSON (NaN refused before anything is written), replacing ``path`` whole."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, allow_nan=False, default=str))


def read_metrics(run_dir: Path | str) -> list[dict[str, Any]]:
    """Every line of a run's ``metrics.jsonl`` (empty if the run logged nothing yet)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_summary(run_dir: Path | str) -> dict[str, Any] | None:
    path = Path(run_dir) / SUMMARY_FILE
    return json.loads(path.read_text()) if path.exists() else None


class RunRecordLogger(Logger):
    """A Lightning logger that appends every ``log_metrics`` call to ``metrics.jsonl`` as one object
    ``{"step": ..., "epoch": ..., <metric>: ...}``. Everything the module and the probe callbacks
    log reaches it, under the same names W&B gets."""

    def __init__(self, run_dir: Path | str) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / METRICS_FILE

    @property
    def name(self) -> str:
        return "run_record"

    @property
    def version(self) -> str:
        return ""

    @property
    def root_dir(self) -> str:
        return str(self.run_dir)

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """The resolved config goes to ``summary.json`` instead (written by the training entry point)."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        row = {"step": step, **{key: _plain(value) for key, value in metrics.items()}}
        if isinstance(row.get("epoch"), float) and row["epoch"].is_integer():
            row["epoch"] = int(row["epoch"])
        # One line per call, flushed, so an interrupted run keeps everything logged so far.
        with open(self.path, "a") as f:
            f.write(json.dumps(row, allow_nan=False) + "\n")
