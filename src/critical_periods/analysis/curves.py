"""A metric's trajectory over training, from the rows of ``metrics.jsonl``, against *epochs
completed* (the project's one epoch axis: see ``critical_periods.record.epochs``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from critical_periods.record.epochs import EPOCH_END_KEYS, FINAL_PREFIXES, epoch_anchors, steps_to_epochs

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
