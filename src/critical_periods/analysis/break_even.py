"""Break-even comparisons (Jastrzebski et al. 2020): the peaks of the curvature and gradient-noise
metrics along each run's trajectory, across learning rates or batch sizes.

The paper compares settings over the part of each trajectory *before it first reaches a common
training accuracy*, so that a slow run is not judged on an unfinished trajectory. Here:

* the common accuracy (``threshold``) is the highest ``train/acc`` that every run of the comparison
  reaches: the smallest, over runs, of the run's best epoch ``train/acc``;
* a run's cut-off epoch is the first epoch whose ``train/acc`` (the mean over that epoch's batches)
  is at least the threshold;
* the restricted peak of a metric is its maximum over the probes logged up to and including the end
  of the cut-off epoch (the probe of the initial weights and early-step probes included); the
  unrestricted peak is the maximum over the whole run.

Expected direction: a larger learning rate or a smaller batch gives smaller peaks of
``lambda_K^1``, ``lambda_H^1`` and ``tr K``, and a larger peak of ``lambda_K^*/lambda_K^1``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from critical_periods.analysis.runs import Run

TRAIN_ACC = "train/acc"

# metric key -> column stem
PEAK_METRICS = {
    "break_even/lambda_k1": "lambda_k1",   # top eigenvalue of the gradient covariance K
    "curvature/lambda_h1": "lambda_h1",    # top eigenvalue of the training-loss Hessian
    "break_even/trace_k": "trace_k",       # tr K = mean ||g_i||^2 - ||g||^2
    "break_even/cond_k": "cond_k",         # lambda_K^* / lambda_K^1
}
SETTINGS = ("lr", "batch_size")


def has_break_even(run: Run) -> bool:
    return any(run.has(key) for key in PEAK_METRICS)


def break_even_runs(runs: Sequence[Run]) -> list[Run]:
    """The completed runs that logged any break-even metric."""
    return [r for r in runs if r.completed and has_break_even(r)]


def varying(runs: Sequence[Run]) -> list[str]:
    """Which of lr and batch size differ between ``runs``."""
    return [name for name in SETTINGS if len({getattr(r, name) for r in runs}) > 1]


def best_train_acc(rows: Sequence[dict[str, Any]]) -> float | None:
    values = [row[TRAIN_ACC] for row in rows if row.get(TRAIN_ACC) is not None]
    return max(values) if values else None


def common_train_accuracy(runs: Sequence[Run]) -> float | None:
    """The highest training accuracy every run reaches (min over runs of each run's best epoch
    ``train/acc``); ``None`` if a run logged no training accuracy."""
    best = [best_train_acc(r.metrics) for r in runs]
    return None if not best or any(b is None for b in best) else min(best)


def cutoff_epoch(rows: Sequence[dict[str, Any]], threshold: float | None) -> int | None:
    """The first epoch whose ``train/acc`` is at least ``threshold`` (``None``: never, or no threshold)."""
    if threshold is None:
        return None
    reached = [row["epoch"] for row in rows if row.get(TRAIN_ACC) is not None and row[TRAIN_ACC] >= threshold]
    return min(reached) if reached else None


def peak(rows: Sequence[dict[str, Any]], key: str, until_epoch: int | None = None) -> float | None:
    """The largest finite value of ``key`` logged while ``epoch <= until_epoch`` (all rows if
    ``until_epoch`` is None); ``None`` if there is none."""
    values = [
        row[key] for row in rows
        if row.get(key) is not None and "step" in row and (until_epoch is None or row.get("epoch", 0) <= until_epoch)
    ]
    return max(values) if values else None


@dataclass
class RunPeaks:
    """One run of the comparison: its setting, cut-off and peaks (see the module docstring)."""

    run: Run
    threshold: float | None
    cutoff_epoch: int | None
    peaks: dict[str, float | None]      # column stem -> peak before the common accuracy
    peaks_all: dict[str, float | None]  # column stem -> peak over the whole run

    def row(self) -> dict[str, Any]:
        return {
            "job": self.run.job,
            "seed": self.run.seed,
            "lr": self.run.lr,
            "batch_size": self.run.batch_size,
            "train_acc_threshold": self.threshold,
            "cutoff_epoch": self.cutoff_epoch,
            "best_train_acc": best_train_acc(self.run.metrics),
            **{f"{stem}_peak": value for stem, value in self.peaks.items()},
            **{f"{stem}_peak_all": value for stem, value in self.peaks_all.items()},
        }


RUN_COLUMNS = [
    "job", "seed", "lr", "batch_size", "train_acc_threshold", "cutoff_epoch", "best_train_acc",
    *(f"{stem}_peak" for stem in PEAK_METRICS.values()),
    *(f"{stem}_peak_all" for stem in PEAK_METRICS.values()),
]
SETTING_COLUMNS = [
    "lr", "batch_size", "n_runs", "seeds", "train_acc_threshold", "cutoff_epochs",
    *(f"{stem}_peak" for stem in PEAK_METRICS.values()),
    *(f"{stem}_peak_all" for stem in PEAK_METRICS.values()),
]


def compare(runs: Sequence[Run]) -> list[RunPeaks]:
    """Peaks of every run in ``runs`` (one comparison: one common training accuracy)."""
    threshold = common_train_accuracy(runs)
    result = []
    for run in runs:
        cutoff = cutoff_epoch(run.metrics, threshold)
        result.append(RunPeaks(
            run=run,
            threshold=threshold,
            cutoff_epoch=cutoff,
            peaks={stem: peak(run.metrics, key, cutoff) if cutoff is not None else None for key, stem in PEAK_METRICS.items()},
            peaks_all={stem: peak(run.metrics, key) for key, stem in PEAK_METRICS.items()},
        ))
    return result


def per_setting(results: Sequence[RunPeaks]) -> list[dict[str, Any]]:
    """One row per (lr, batch size): the peaks averaged over the setting's runs (seeds), and every
    run's cut-off epoch (``cutoff_epochs``: ``seed:epoch`` pairs)."""
    groups: dict[tuple, list[RunPeaks]] = defaultdict(list)
    for result in results:
        groups[(result.run.lr, result.run.batch_size)].append(result)

    def mean(values: list[float | None]) -> float | None:
        return float(np.mean(values)) if values and all(v is not None for v in values) else None

    rows = []
    for (lr, batch_size), group in sorted(groups.items(), key=lambda item: tuple(-1 if v is None else v for v in item[0])):
        row: dict[str, Any] = {
            "lr": lr,
            "batch_size": batch_size,
            "n_runs": len(group),
            "seeds": ";".join(str(g.run.seed) for g in group),
            "train_acc_threshold": group[0].threshold,
            "cutoff_epochs": ";".join(f"{g.run.seed}:{'' if g.cutoff_epoch is None else g.cutoff_epoch}" for g in group),
        }
        for stem in PEAK_METRICS.values():
            row[f"{stem}_peak"] = mean([g.peaks[stem] for g in group])
            row[f"{stem}_peak_all"] = mean([g.peaks_all[stem] for g in group])
        rows.append(row)
    return rows
