"""How long a run trains, and how its learning rate moves, given the deficit window.

Achille et al. train a fixed number of clean epochs *after* the deficit is removed, so the total
grows with ``onset + length`` (``mode=after_deficit``); ``mode=fixed`` trains ``epochs`` in all.
Whether the learning-rate schedule restarts when the deficit ends changes the curves, so it is an
explicit option (``lr_restart``), never a hidden choice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from critical_periods.config.validation import not_allowed
from critical_periods.vocabulary import LrSchedule, ScheduleMode



@dataclass
class LrFactor:
    """Multiplier of the base learning rate at ``epoch`` (a ``LambdaLR`` lambda; a dataclass, not a
    closure, so the scheduler's state saves into checkpoints).

    ``exponential``: ``gamma ** e``; ``step``: ``gamma ** (e // step_size)``; ``constant``: 1, where
    ``e`` is the epoch counted from 0, or from ``restart_epoch`` once it is reached.

    >>> LrFactor("exponential", gamma=0.5, restart_epoch=2)(3)
    0.5
    """

    kind: str = "constant"
    gamma: float = 1.0
    step_size: int = 1
    restart_epoch: int | None = None

    def __call__(self, epoch: int) -> float:
        if self.restart_epoch is not None and epoch >= self.restart_epoch:
            epoch -= self.restart_epoch
        if self.kind == LrSchedule.EXPONENTIAL:
            return self.gamma**epoch
        if self.kind == LrSchedule.STEP:
            return self.gamma ** (epoch // self.step_size)
        return 1.0


def _whole(key: str, value, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise not_allowed(f"schedule.{key}", value, f"a whole number >= {minimum}")
    return value


def total_epochs(mode: str, deficit_end: int, epochs: int, epochs_after_deficit: int) -> int:
    """Epochs in the run; raises if the deficit window does not fit a fixed schedule."""
    if mode == ScheduleMode.AFTER_DEFICIT:
        total = deficit_end + _whole("epochs_after_deficit", epochs_after_deficit, 0)
        if total < 1:
            raise ValueError("schedule.epochs_after_deficit=0 with no deficit window leaves nothing to train: set it >= 1")
        return total
    if mode == ScheduleMode.FIXED:
        _whole("epochs", epochs, 1)
        if deficit_end > epochs:
            raise ValueError(
                f"the deficit window ends at epoch {deficit_end} (deficit.onset + deficit.length) but "
                f"schedule.epochs={epochs}: with schedule.mode=fixed the window must end by the last epoch; "
                f"raise schedule.epochs or use schedule.mode=after_deficit"
            )
        return epochs
    raise not_allowed("schedule.mode", mode, f"one of {', '.join(ScheduleMode.values())}")


def lr_factor(kind: str, gamma: float, step_size: int, restart: bool, deficit_end: int, deficit_length: int) -> LrFactor:
    """The ``LrFactor`` for a schedule config; ``restart`` only takes effect when there is a deficit."""
    if kind not in LrSchedule.values():
        raise not_allowed("schedule.lr_schedule", kind, f"one of {', '.join(LrSchedule.values())}")
    if not gamma > 0:
        raise not_allowed("schedule.lr_gamma", gamma, "a number > 0")
    _whole("lr_step_size", step_size, 1)
    restart_epoch = deficit_end if restart and deficit_length > 0 else None
    return LrFactor(kind, float(gamma), step_size, restart_epoch)


@dataclass(frozen=True)
class Schedule:
    """A run's time line: how many epochs it trains, when its deficit is on, and its lr factor per
    epoch (with the restart at the deficit's end, if asked). The one place that does this arithmetic:
    training, branching and the cost plan all build one.

    >>> s = Schedule.of({"mode": "after_deficit", "epochs": 0, "epochs_after_deficit": 3, "lr_schedule": "exponential",
    ...                  "lr_gamma": 0.5, "lr_step_size": 1, "lr_restart": True}, onset=1, length=2)
    >>> s.epochs, s.deficit_end, s.lr_factors()
    (6, 3, [1.0, 0.5, 0.25, 1.0, 0.5, 0.25, 0.125])
    """

    epochs: int
    onset: int
    length: int
    lr_factor: LrFactor

    @property
    def deficit_end(self) -> int:
        return self.onset + self.length

    def lr_factors(self) -> list[float]:
        """The lr factor of every epoch, and of the epoch after the last (a checkpoint holds it)."""
        return [float(self.lr_factor(e)) for e in range(self.epochs + 1)]

    @classmethod
    def of(cls, schedule: Mapping[str, Any], onset: int, length: int) -> Schedule:
        """From the ``schedule`` config and the deficit's window; raises ``ValueError`` (one line,
        naming the key) for a bad value."""
        end = onset + length
        epochs = total_epochs(schedule["mode"], end, schedule["epochs"], schedule["epochs_after_deficit"])
        factor = lr_factor(schedule["lr_schedule"], schedule["lr_gamma"], schedule["lr_step_size"],
                           schedule["lr_restart"], end, length)
        return cls(epochs, onset, length, factor)
