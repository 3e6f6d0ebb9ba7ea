"""``metrics.jsonl``: one JSON object per logged step, ``{"step", "epoch", <metric>: value, ...}``
(``step``: optimiser steps taken when the values were measured, never decreasing along the file;
``epoch``: the index of the epoch they belong to; see :mod:`critical_periods.record.epochs`),
appended by :class:`RunRecordLogger` while the run trains and cut back to a checkpoint on resume.
Non-finite numbers are written as ``null`` to keep every line strict JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytorch_lightning.loggers.logger import Logger
from pytorch_lightning.utilities import rank_zero_only

from critical_periods.record.epochs import record_step
from critical_periods.record.jsonl import append_row, plain, read_rows
from critical_periods.record.layout import METRICS_FILE
from critical_periods.record.metric_names import EPOCH, STEP


def read_metrics(run_dir: Path | str) -> list[dict[str, Any]]:
    """Every readable row of a run's ``metrics.jsonl`` (empty if the run logged nothing yet; a torn
    line is skipped with a warning)."""
    return read_rows(Path(run_dir) / METRICS_FILE)


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
        row = {STEP: record_step(metrics, step), **{key: plain(value) for key, value in metrics.items()}}
        if isinstance(row.get(EPOCH), float) and row[EPOCH].is_integer():
            row[EPOCH] = int(row[EPOCH])
        # One line per call, flushed, so an interrupted run keeps everything logged so far.
        append_row(self.path, row)
