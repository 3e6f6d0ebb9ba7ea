"""A metric's trajectory over training, from the rows of ``metrics.jsonl``.

The time axis is *epochs completed* when the value was logged: 0 for the probe of the initial
weights (global step 0), ``e + 1`` for anything logged at the end of epoch ``e``, and fractions in
between for probes at extra early steps (interpolated by global step within the epoch).

The training module's per-epoch metrics (``EPOCH_END_KEYS``: the epoch's mean training loss and
accuracy, validation, lr) are logged with the step of the epoch's last batch, one step before the
end-of-epoch probes; they describe the whole epoch, so they are placed at ``e + 1`` by their epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from critical_periods import metric_names as mn

FINAL_PREFIXES = ("final/", "test/")
EPOCH_END_KEYS = frozenset({mn.TRAIN_LOSS, mn.TRAIN_ACC, mn.VAL_LOSS, mn.VAL_ACC, mn.VAL_DEFICIT_ACC, mn.LR, mn.DEFICIT_ACTIVE})


def _is_training_row(row: dict[str, Any]) -> bool:
    return isinstance(row.get("step"), int) and isinstance(row.get("epoch"), int) and not any(
        key.startswith(FINAL_PREFIXES) for key in row
    )


def epoch_anchors(rows: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, epochs completed)``: step 0 -> 0 epochs, and the last global step logged in epoch
    ``e`` -> ``e + 1`` epochs (the test and ``final/`` rows left out)."""
    last_step: dict[int, int] = {}
    for row in rows:
        if _is_training_row(row):
            last_step[row["epoch"]] = max(row["step"], last_step.get(row["epoch"], -1))
    steps, epochs = [0], [0.0]
    for epoch in sorted(last_step):
        if last_step[epoch] > steps[-1]:
            steps.append(last_step[epoch])
            epochs.append(epoch + 1.0)
    return np.asarray(steps, dtype=float), np.asarray(epochs)


def steps_to_epochs(steps: np.ndarray, anchors: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Global steps -> epochs completed, piecewise linear between the anchors (and beyond the last,
    at the last epoch's pace)."""
    anchor_steps, anchor_epochs = anchors
    epochs = np.interp(steps, anchor_steps, anchor_epochs)
    if len(anchor_steps) >= 2:
        pace = (anchor_epochs[-1] - anchor_epochs[-2]) / (anchor_steps[-1] - anchor_steps[-2])
        beyond = steps > anchor_steps[-1]
        epochs[beyond] = anchor_epochs[-1] + (steps[beyond] - anchor_steps[-1]) * pace
    return epochs


@dataclass
class Series:
    """One metric of one run: ``x`` = epochs completed, ``y`` = the values, in logging order, one
    value per global step (the last one logged at that step); non-finite (null) values left out."""

    x: np.ndarray
    y: np.ndarray
    epoch: np.ndarray  # the ``epoch`` field of each row (the epoch in progress when it was logged)

    def __len__(self) -> int:
        return len(self.y)

    def peak(self) -> tuple[float, float] | None:
        """``(max value, its x)``; the first occurrence of the maximum; ``None`` for no values."""
        if not len(self):
            return None
        i = int(np.argmax(self.y))
        return float(self.y[i]), float(self.x[i])


def series(rows: Sequence[dict[str, Any]], key: str, anchors: tuple[np.ndarray, np.ndarray] | None = None) -> Series:
    """The trajectory of ``key`` in ``rows`` (see :class:`Series`).

    >>> rows = [{"step": 0, "epoch": 0, "fisher/trace": 1.0}, {"step": 4, "epoch": 0, "fisher/trace": 2.0},
    ...         {"step": 9, "epoch": 0, "train/acc": 0.5}, {"step": 10, "epoch": 0, "fisher/trace": 3.0}]
    >>> series(rows, "fisher/trace").x.tolist(), series(rows, "train/acc").x.tolist()
    ([0.0, 0.4, 1.0], [1.0])
    """
    by_step: dict[int, tuple[float, int]] = {}
    for row in rows:
        value = row.get(key)
        if value is not None and isinstance(row.get("step"), int) and not key.startswith(FINAL_PREFIXES):
            by_step[row["step"]] = (float(value), int(row.get("epoch", 0)))
    steps = np.asarray(sorted(by_step), dtype=float)
    epoch = np.asarray([by_step[int(s)][1] for s in steps], dtype=int)
    if key in EPOCH_END_KEYS:
        x = epoch + 1.0
    else:
        anchors = anchors if anchors is not None else epoch_anchors(rows)
        x = steps_to_epochs(steps, anchors) if len(steps) else steps
    return Series(x=x, y=np.asarray([by_step[int(s)][0] for s in steps]), epoch=epoch)


def keys_with_prefix(rows: Sequence[dict[str, Any]], prefix: str) -> list[str]:
    """Metric keys starting with ``prefix``, in order of first appearance."""
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            if key.startswith(prefix):
                seen.setdefault(key, None)
    return list(seen)


@dataclass
class Band:
    """Several runs' trajectories on the union of their x values: at each x, the mean, min and max
    over the runs that have a value there, and how many do (``n``)."""

    x: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n: np.ndarray


def mean_over_runs(curves: Sequence[Series]) -> Band:
    """Mean and min-max over runs (e.g. seeds), aligned on x (to 1e-6 epoch)."""
    values: dict[float, list[float]] = {}
    for curve in curves:
        for x, y in zip(np.round(curve.x, 6), curve.y):
            values.setdefault(float(x), []).append(float(y))
    xs = sorted(values)
    return Band(
        x=np.asarray(xs),
        mean=np.asarray([np.mean(values[x]) for x in xs]),
        low=np.asarray([np.min(values[x]) for x in xs]),
        high=np.asarray([np.max(values[x]) for x in xs]),
        n=np.asarray([len(values[x]) for x in xs]),
    )


def first_reaching(curve: Series, threshold: float) -> float | None:
    """The first x at which ``curve`` is at least ``threshold`` (``None``: never). For ``train/acc``,
    logged at the end of each epoch, that is the end of the first epoch whose mean training accuracy
    passes the threshold.

    >>> first_reaching(Series(np.array([1.0, 2.0, 3.0]), np.array([0.4, 0.7, 0.9]), np.array([0, 1, 2])), 0.6)
    2.0
    """
    reached = np.flatnonzero(curve.y >= threshold)
    return float(curve.x[reached[0]]) if len(reached) else None
