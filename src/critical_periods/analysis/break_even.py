"""Break-even comparisons (Jastrzebski et al. 2020): the peaks of the curvature and gradient-noise
metrics along each run's trajectory, across learning rates or batch sizes.

Each metric's peak is taken two ways:

* over the whole run (``peaks_all``), as the paper does;
* up to the end of a run's *threshold epoch* (``peaks``): the first epoch whose ``train/acc`` (the
  mean over that epoch's batches) is at least a training accuracy ``threshold``. The paper draws this
  epoch as a vertical line (60% on CIFAR-10), a diagnostic; the early phase before it is what the
  conjectures are about. ``threshold`` is either fixed in advance (``compare(runs, 0.6)``) or, by
  default, the common accuracy: the highest ``train/acc`` every run of the comparison reaches (the
  smallest, over runs, of each run's best epoch ``train/acc``).

Probes logged up to and including the end of the threshold epoch count (the probe of the initial
weights and early-step probes included).

Break-even point: for SGD the top Hessian eigenvalue rises until it is about the stability limit of
gradient descent, ``lambda_H^1 = 2 / lr``, and levels off there or below. A run *passes* it when its
``lambda_H^1`` reaches ``PASS_FRACTION * 2 / lr`` (``break_even_epoch``: the first epoch it does), and
the comparison is only meaningful for runs that pass it before their threshold epoch.

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

from critical_periods.record import metric_names as names

TRAIN_ACC = names.TRAIN_ACC

# metric key -> column stem
PEAK_METRICS = {
    names.LAMBDA_K1: "lambda_k1",          # top eigenvalue of the gradient covariance K
    names.LAMBDA_H1: "lambda_h1",          # top eigenvalue of the training-loss Hessian
    names.TRACE_K: "trace_k",              # tr K, the total gradient variance
    names.COND_K: "cond_k",                # lambda_K^* / lambda_K^1 (smallest nonzero over largest)
}
# Peaked and tabled too, not drawn: tr K / lambda_K^1, the submitted paper's bound on the conditioning.
BOUND_METRICS = {names.TRACE_K_RATIO: "trace_k_ratio"}
ALL_PEAK_METRICS = {**PEAK_METRICS, **BOUND_METRICS}

# The paper's hand-picked training accuracy for the vertical line (CIFAR-10).
PAPER_TRAIN_ACC_THRESHOLD = 0.6
# lambda_H^1 must come this close to 2/lr for a run to count as past its break-even point: SGD's noise
# keeps it at or below the gradient-descent limit, the more so the smaller the batch (pilot, MNIST-1D
# MLP at lr 0.1: batch 128 levels off at 20-29, batch 32 at 12-19, against 2/lr = 20).
PASS_FRACTION = 0.5
SETTINGS = ("lr", "batch_size")


def has_break_even(run: Run) -> bool:
    return any(run.has(key) for key in ALL_PEAK_METRICS)


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


def break_even_epoch(rows: Sequence[dict[str, Any]], lr: float | None, fraction: float = PASS_FRACTION) -> int | None:
    """The first epoch in which a probe logged ``lambda_H^1 >= fraction * 2 / lr`` (``None``: never).

    >>> break_even_epoch([{"step": 1, "epoch": 0, "curvature/lambda_h1": 3.0},
    ...                   {"step": 9, "epoch": 2, "curvature/lambda_h1": 11.0}], lr=0.1)
    2
    """
    if not lr:
        return None
    hit = [row["epoch"] for row in rows if "step" in row and row.get(names.LAMBDA_H1) is not None
           and row[names.LAMBDA_H1] >= fraction * 2.0 / lr]
    return min(hit) if hit else None


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
    break_even_epoch: int | None = None  # first epoch with lambda_H^1 >= PASS_FRACTION * 2/lr

    @property
    def two_over_lr(self) -> float | None:
        return 2.0 / self.run.lr if self.run.lr else None

    @property
    def passed_break_even(self) -> bool:
        """lambda_H^1 came within ``PASS_FRACTION`` of 2/lr."""
        return self.break_even_epoch is not None

    @property
    def comparable(self) -> bool:
        """Passed break-even no later than the epoch it first reached the threshold accuracy."""
        return self.passed_break_even and self.cutoff_epoch is not None and self.break_even_epoch <= self.cutoff_epoch

    def row(self) -> dict[str, Any]:
        return {
            "job": self.run.job,
            "seed": self.run.seed,
            "lr": self.run.lr,
            "batch_size": self.run.batch_size,
            "train_acc_threshold": self.threshold,
            "cutoff_epoch": self.cutoff_epoch,
            "best_train_acc": best_train_acc(self.run.metrics),
            "two_over_lr": self.two_over_lr,
            "break_even_epoch": self.break_even_epoch,
            **{f"{stem}_peak": value for stem, value in self.peaks.items()},
            **{f"{stem}_peak_all": value for stem, value in self.peaks_all.items()},
        }


RUN_COLUMNS = [
    "job", "seed", "lr", "batch_size", "train_acc_threshold", "cutoff_epoch", "best_train_acc",
    "two_over_lr", "break_even_epoch",
    *(f"{stem}_peak" for stem in ALL_PEAK_METRICS.values()),
    *(f"{stem}_peak_all" for stem in ALL_PEAK_METRICS.values()),
]
SETTING_COLUMNS = [
    "lr", "batch_size", "n_runs", "seeds", "train_acc_threshold", "cutoff_epochs",
    *(f"{stem}_peak" for stem in ALL_PEAK_METRICS.values()),
    *(f"{stem}_peak_all" for stem in ALL_PEAK_METRICS.values()),
]


def compare(runs: Sequence[Run], threshold: float | None = None) -> list[RunPeaks]:
    """Peaks of every run in ``runs`` up to its threshold epoch and over the whole run; ``threshold``
    a training accuracy fixed in advance, or ``None`` for the common accuracy of ``runs``."""
    if threshold is None:
        threshold = common_train_accuracy(runs)
    result = []
    for run in runs:
        cutoff = cutoff_epoch(run.metrics, threshold)
        result.append(RunPeaks(
            run=run,
            threshold=threshold,
            cutoff_epoch=cutoff,
            peaks={stem: peak(run.metrics, key, cutoff) if cutoff is not None else None
                   for key, stem in ALL_PEAK_METRICS.items()},
            peaks_all={stem: peak(run.metrics, key) for key, stem in ALL_PEAK_METRICS.items()},
            break_even_epoch=break_even_epoch(run.metrics, run.lr),
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
        for stem in ALL_PEAK_METRICS.values():
            row[f"{stem}_peak"] = mean([g.peaks[stem] for g in group])
            row[f"{stem}_peak_all"] = mean([g.peaks_all[stem] for g in group])
        rows.append(row)
    return rows
