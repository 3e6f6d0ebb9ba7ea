"""Tables: one row per run (``runs.csv``), and the deficit tables behind the figures, aggregated
over seeds (final test error per removal epoch, sensitivity per onset).

Errors are fractions, as in the summaries (``final/test_error`` = 1 - test accuracy); the figures
and the printed report show them in percent.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from critical_periods.analysis.curves import series
from critical_periods.analysis.runs import Run, condition, varying_settings
from critical_periods.record import metric_names as mn

FISHER = mn.FISHER_TRACE

RUNS_COLUMNS = [
    "job",             # job directory, relative to the sweep directory
    "overrides",       # the job's Hydra overrides, comma-joined
    "status",          # completed | diverged | failed | running (no summary.json yet, or killed)
    "name",            # the experiment name (W&B group)
    "condition",       # settings that vary across the sweep besides deficit and seed
    "deficit",         # none | blur | vertical_flip | label_permutation | noise
    "onset",           # first epoch with the deficit
    "length",          # epochs with the deficit
    "removal_epoch",   # onset + length: the first clean epoch
    "epochs",          # epochs planned
    "epochs_trained",  # epochs actually run
    "seed",
    "lr",              # optim.lr (the initial learning rate)
    "batch_size",      # data.batch_size
    "weight_decay",    # optim.weight_decay
    "model",           # model class name
    "test_error",      # final/test_error = 1 - final/test_acc (fraction)
    "test_acc",        # final/test_acc (fraction)
    "test_loss",       # final/test_loss (mean cross-entropy, nats)
    "fit_seconds",     # wall time of trainer.fit
    "fisher_peak",     # max of fisher/trace over training (runs with the Fisher probe)
    "fisher_peak_epoch",  # epochs completed when that max was logged (0 = initial weights)
    "error",           # first line of the failure message
]


def runs_table(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """One row per run (columns: ``RUNS_COLUMNS``); numbers exactly as in the summaries."""
    keys = varying_settings(runs)
    rows = []
    for run in runs:
        peak = series(run.metrics, FISHER).peak() if run.has(FISHER) else None
        rows.append({
            "job": run.job,
            "overrides": ",".join(run.overrides),
            "status": run.status,
            "name": run.name,
            "condition": condition(run, keys),
            "deficit": run.deficit,
            "onset": run.onset,
            "length": run.length,
            "removal_epoch": run.removal_epoch,
            "epochs": run.epochs,
            "epochs_trained": run.epochs_trained,
            "seed": run.seed,
            "lr": run.lr,
            "batch_size": run.batch_size,
            "weight_decay": run.weight_decay,
            "model": run.model,
            "test_error": run.test_error,
            "test_acc": run.test_acc,
            "test_loss": run.test_loss,
            "fit_seconds": run.fit_seconds,
            "fisher_peak": peak[0] if peak else None,
            "fisher_peak_epoch": peak[1] if peak else None,
            "error": run.error,
        })
    return rows


def write_csv(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> Path:
    """Write ``rows`` with the standard ``csv`` module: ``None`` as an empty cell, floats with
    ``repr`` (they read back bit for bit)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return path


# -- aggregation over seeds -----------------------------------------------------------------------------


@dataclass
class Stat:
    """Values of the runs of one cell (e.g. several seeds): mean, std (population), min, max, n."""

    mean: float
    std: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        a = np.asarray(values, dtype=float)
        return cls(float(a.mean()), float(a.std()), float(a.min()), float(a.max()), len(a))


def plotted_runs(runs: Sequence[Run]) -> list[Run]:
    """The runs figures and deficit tables use: completed, with a final test error."""
    return [r for r in runs if r.completed and r.test_error is not None]


def baselines(runs: Sequence[Run]) -> dict[str, Stat]:
    """Per condition, the final test error of the runs without deficit (kind none, or length 0)."""
    keys = varying_settings(runs)
    errors: dict[str, list[float]] = defaultdict(list)
    for run in plotted_runs(runs):
        if run.is_baseline:
            errors[condition(run, keys)].append(run.test_error)
    return {cond: Stat.of(values) for cond, values in sorted(errors.items())}


@dataclass
class Cell:
    """One point of a deficit curve: the runs of one (kind, condition, x), aggregated over seeds."""

    kind: str
    condition: str
    x: int           # removal epoch, or onset
    error: Stat      # final test error (fraction)
    length: int | None = None
    sensitivity: Stat | None = None  # error minus the matched no-deficit run's (else the condition's mean baseline)


def removal_table(runs: Sequence[Run]) -> list[Cell]:
    """Final test error against the removal epoch (onset + length) for runs with onset 0, per
    deficit kind and condition (Achille et al. Fig. 1): a kind's length-0 runs are its removal
    epoch 0; no-deficit runs of two or more lengths > 0 (the matched controls) are the curve of kind
    ``none``. Sorted by kind, condition, removal epoch."""
    keys = varying_settings(runs)
    errors: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    # Matched no-deficit runs of the same lengths (same epochs and lr schedule) form a curve too.
    clean: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for run in plotted_runs(runs):
        if run.onset != 0:
            continue
        if run.deficit not in (None, "none") and run.removal_epoch is not None:
            errors[(run.deficit, condition(run, keys), run.removal_epoch)].append(run.test_error)
        elif run.deficit in (None, "none") and (run.length or 0) > 0:
            clean[("none", condition(run, keys), run.length)].append(run.test_error)
    if len({x for *_, x in clean}) >= 2:
        errors.update(clean)
    return [Cell(kind, cond, x, Stat.of(v)) for (kind, cond, x), v in sorted(errors.items())]


def matched_baselines(runs: Sequence[Run]) -> dict[tuple[str, int | None, int | None, int | None], float]:
    """The final test error of each no-deficit run by (condition, seed, onset, length): the matched
    control of the deficit runs with that seed and window (the same epochs and lr schedule)."""
    keys = varying_settings(runs)
    return {(condition(run, keys), run.seed, run.onset, run.length): run.test_error
            for run in plotted_runs(runs) if run.deficit in (None, "none") and run.test_error is not None}


def sensitivity_table(runs: Sequence[Run]) -> list[Cell]:
    """Sensitivity to a deficit window against its onset (Achille et al. Fig. 4): for runs with a
    deficit of fixed length > 0, the final test error minus that of the matched no-deficit run (same
    condition, seed, onset and length: a paired difference), or, for a run without one, minus the
    mean baseline error of its condition; per (kind, length, condition, onset). Only curves with at
    least two onsets and a baseline are kept."""
    keys = varying_settings(runs)
    base = baselines(runs)
    matched = matched_baselines(runs)
    errors: dict[tuple[str, int, str], dict[int, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for run in plotted_runs(runs):
        if run.deficit not in (None, "none") and (run.length or 0) > 0 and run.onset is not None:
            cond = condition(run, keys)
            control = matched.get((cond, run.seed, run.onset, run.length))
            if control is None and cond in base:
                control = base[cond].mean
            if control is not None:
                errors[(run.deficit, run.length, cond)][run.onset].append((run.test_error, control))
    cells = []
    for (kind, length, cond), by_onset in sorted(errors.items()):
        if len(by_onset) < 2:
            continue
        for onset, pairs in sorted(by_onset.items()):
            cells.append(Cell(kind, cond, onset, Stat.of([e for e, _ in pairs]), length,
                              Stat.of([e - c for e, c in pairs])))
    return cells
