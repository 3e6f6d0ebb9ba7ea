"""The project's one epoch axis: *epochs completed* when a value was measured.

0 is the probe of the initial weights (global step 0), ``e + 1`` anything measured at the end of
epoch ``e`` (counted from 0), and fractions in between for probes at extra early steps (interpolated
by optimiser step within the epoch). The figures, the analysis tables, W&B's and TensorBoard's
x-axis and ``summary.json`` (``epochs``, ``epochs_trained``, ``resumed_from_epoch``,
``branched_from_epoch``) all count epochs completed.

``metrics.jsonl`` stores the raw facts the axis is computed from, in one convention for every row:
``step`` is the number of optimiser steps taken when the values were measured (so it never decreases
along the file), and ``epoch`` the index (from 0, Lightning's ``current_epoch``) of the epoch the
row belongs to. A row at the end of epoch ``e`` (the epoch's mean training loss and accuracy,
validation, lr: ``EPOCH_END_KEYS``, and the end-of-epoch probes) has ``epoch = e`` and
``step = (e + 1) x steps per epoch``: ``e + 1`` epochs completed. (Lightning hands its loggers an
epoch's own numbers at the last batch's index, one step earlier; the run record adds that step.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from critical_periods.record import metric_names as mn

FINAL_PREFIXES = (mn.FINAL_PREFIX, mn.TEST_PREFIX)
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


def record_epochs(rows: list[dict[str, Any]]) -> list[float]:
    """Epochs completed of every row (the analysis' convention; see ``analysis.curves``)."""
    anchors = epoch_anchors(rows)
    steps = np.asarray([row.get("step") or 0 for row in rows], dtype=float)
    along = steps_to_epochs(steps, anchors) if len(steps) else steps
    last = float(anchors[1][-1])
    epochs = []
    for row, x in zip(rows, along):
        if any(key.startswith(mn.FINAL_PREFIX) for key in row):
            epochs.append(last)
        elif EPOCH_END_KEYS & row.keys() and isinstance(row.get("epoch"), int):
            epochs.append(row["epoch"] + 1.0)
        else:
            epochs.append(float(x))
    return epochs


def live_epoch(metrics: dict[str, Any], step: int, steps_per_epoch: int | None) -> float:
    """Epochs completed for a row logged live: ``e + 1`` for an epoch's own numbers, else step over
    steps per epoch (the same axis :func:`write_offline_run` computes from the whole record)."""
    epoch = metrics.get("epoch")
    if epoch is not None and EPOCH_END_KEYS & metrics.keys():
        return float(epoch) + 1.0
    if step == 0:  # the initial weights' probe, which may come before the epoch's length is known
        return 0.0
    if epoch is not None and not steps_per_epoch:
        return float(epoch) + 1.0
    return step / steps_per_epoch if steps_per_epoch else float(step)


def record_step(metrics: dict[str, Any], step: int | None) -> int | None:
    """The step a row is recorded at: optimiser steps taken. Lightning logs an epoch's own numbers at
    its last batch's index, one step before the end-of-epoch probes; they get that index + 1."""
    if step is not None and EPOCH_END_KEYS & metrics.keys():
        return step + 1
    return step
