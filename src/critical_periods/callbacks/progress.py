"""How a run is going, wherever it runs: one readable line per epoch without a terminal (SLURM logs,
CI, nohup), where Lightning's progress bar is off; on a terminal, the run's latest train loss, val
error and Fisher trace on Lightning's progress bar."""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO

import pytorch_lightning as pl
from pytorch_lightning.loggers import Logger

from critical_periods.record.metric_names import (
    DEFICIT_ACTIVE, EPOCH, FISHER_TRACE, LAMBDA_H1, LR, TRAIN_ACC, TRAIN_LOSS, VAL_ACC,
)


class LatestMetrics(Logger):
    """Keeps, per epoch, the last value logged under every name: by the module (``self.log``) and by
    the probe callbacks (which write to the loggers directly, not to ``callback_metrics``)."""

    def __init__(self) -> None:
        super().__init__()
        self.by_epoch: dict[int, dict[str, float]] = {}
        self.latest: dict[str, float] = {}  # the last value of every name, whatever its epoch

    # name "", version "", save_dir None: a checkpoint directory derived from loggers[0] stays the
    # trainer's default one if this happens to be the only logger.
    @property
    def name(self) -> str:
        return ""

    @property
    def version(self) -> str:
        return ""

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.latest.update({key: float(value) for key, value in metrics.items() if key != EPOCH})
        if EPOCH in metrics:
            self.by_epoch.setdefault(int(metrics[EPOCH]), {}).update(
                {key: float(value) for key, value in metrics.items()}
            )


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def epoch_line(epoch: int, max_epochs: int, metrics: dict[str, float], seconds: float) -> str:
    """The line for one epoch, from whichever of its metrics were logged.

    >>> epoch_line(2, 40, {"train/loss": 0.91234, "train/acc": 0.673, "val/acc": 0.644, "lr": 0.0705,
    ...                    "deficit/active": 1.0, "fisher/trace": 123.456}, 12.34)
    'epoch 3/40: train loss 0.912, error 32.7% | val error 35.6% | lr 0.0705 | deficit on | Fisher trace 123.5 | 12.3 s/epoch'
    """
    parts = [f"epoch {epoch + 1}/{max_epochs}:"]
    train = []
    if TRAIN_LOSS in metrics:
        train.append(f"train loss {metrics[TRAIN_LOSS]:.3f}")
    if TRAIN_ACC in metrics:
        train.append(f"error {_percent(1 - metrics[TRAIN_ACC])}")
    sections = [", ".join(train)] if train else []
    if VAL_ACC in metrics:
        sections.append(f"val error {_percent(1 - metrics[VAL_ACC])}")
    if LR in metrics:
        sections.append(f"lr {metrics[LR]:.3g}")
    if DEFICIT_ACTIVE in metrics:
        sections.append("deficit on" if metrics[DEFICIT_ACTIVE] else "deficit off")
    for name, label in ((FISHER_TRACE, "Fisher trace"), (LAMBDA_H1, "lambda_H^1")):
        if name in metrics:
            value = metrics[name]
            sections.append(f"{label} {value:.4g}" if math.isfinite(value) else f"{label} nan")
    sections.append(f"{seconds:.1f} s/epoch")
    return " ".join(parts) + " " + " | ".join(sections)


def bar_metrics(latest: dict[str, float]) -> dict[str, str]:
    """What the progress bar adds to Lightning's own: the latest train loss, val error, Fisher trace.

    >>> bar_metrics({"train/loss": 0.91234, "val/acc": 0.644, "fisher/trace": 123.456, "lr": 0.1})
    {'train loss': '0.912', 'val error': '35.6%', 'Fisher trace': '123.5'}
    """
    shown = {}
    if TRAIN_LOSS in latest:
        shown["train loss"] = f"{latest[TRAIN_LOSS]:.3f}"
    if VAL_ACC in latest:
        shown["val error"] = _percent(1 - latest[VAL_ACC])
    if FISHER_TRACE in latest:
        shown["Fisher trace"] = f"{latest[FISHER_TRACE]:.4g}"
    return shown


class EpochProgress(pl.Callback):
    """Writes :func:`epoch_line` for every finished epoch to ``stream`` (``sys.stderr`` at the time
    of writing by default), unless that stream is a terminal, where the progress bar already shows
    the run.

    An epoch's line is written once all of its metrics are in, which is after the module's own
    epoch-end logging: at the next epoch's start, or at the end of training for the last one.
    Seconds per epoch are wall time from one epoch's start to the next (training, validation,
    probes and checkpoint included).

    On a terminal it writes no line; it puts :func:`bar_metrics` on Lightning's progress bar
    instead, beside the bar's own numbers (the probes log to the loggers, not to the bar, so the
    bar alone would never show the Fisher trace).
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self.stream = stream
        self.metrics = LatestMetrics()
        self._started: dict[int, float] = {}
        self._written: set[int] = set()

    def _out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stderr

    def _enabled(self) -> bool:
        isatty = getattr(self._out(), "isatty", None)
        return not (isatty is not None and isatty())

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not any(logger is self.metrics for logger in trainer.loggers):
            trainer.loggers = [*trainer.loggers, self.metrics]  # last: loggers[0] keeps its role
        bar = trainer.progress_bar_callback
        if bar is not None and not self._enabled() and not getattr(bar, "_shows_run_metrics", False):
            bar.get_metrics = self._bar_metrics_beside(bar.get_metrics)  # the bar's documented hook
            bar._shows_run_metrics = True

    def _bar_metrics_beside(self, own):
        def get_metrics(trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
            return {**own(trainer, pl_module), **bar_metrics(self.metrics.latest)}
        return get_metrics

    def _write(self, trainer: pl.Trainer, epoch: int, now: float) -> None:
        if epoch in self._written or epoch not in self._started or not self._enabled():
            return
        self._written.add(epoch)
        metrics = self.metrics.by_epoch.get(epoch, {})
        line = epoch_line(epoch, trainer.max_epochs, metrics, now - self._started[epoch])
        print(line, file=self._out(), flush=True)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        now = time.perf_counter()
        self._write(trainer, trainer.current_epoch - 1, now)
        self._started[trainer.current_epoch] = now

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        now = time.perf_counter()
        for epoch in sorted(self._started):
            self._write(trainer, epoch, now)
