"""What a job does epoch by epoch, as far as its state depends on it, and when two jobs agree.

Two jobs of a sweep hold the same state after ``e`` epochs (weights, optimiser, every random stream,
every logged number) when their resolved configs agree on every result key apart from the deficit
and the schedule, and before epoch ``e`` the deficit is on in the same epochs with the same options
and the learning-rate factor is the same. The lr factor of epoch ``e`` itself must agree too: the
optimiser's learning rate for epoch ``e`` is set at the end of epoch ``e - 1`` and saved with it.
How long a job trains (the schedule's length, where its window ends) changes nothing before ``e``.

Data order, augmentation and the deficit's draws are seeded by (seed, epoch, batch), probes by
(seed, step), so nothing else about a job's past enters its state.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import hydra

from critical_periods.record.result_keys import result_config
from critical_periods.schedule import Schedule

# The two parts of the config a timeline spells out epoch by epoch instead of comparing whole.
PER_EPOCH_PARTS = ("deficit", "schedule")
# Deficit options that only place its window.
WINDOW_KEYS = ("onset", "length")


@dataclass(frozen=True)
class Timeline:
    """A job's state-relevant history: ``trunk`` (the rest of its result config, as JSON), the deficit
    options applied in each epoch (``None`` while off) and the lr factor of each epoch, up to
    ``epochs`` (the lr list has one more entry: the factor of the epoch after the last)."""

    trunk: str
    deficit: tuple[str | None, ...]
    lr: tuple[float, ...]
    epochs: int

    def key(self, epoch: int) -> str:
        """A name for this job's state after ``epoch`` epochs (0 < epoch <= epochs): jobs whose
        states are equal there have the same key."""
        if not 0 < epoch <= self.epochs:
            raise ValueError(f"epoch {epoch} is outside this job's 1..{self.epochs}")
        history = [self.trunk, self.deficit[:epoch], self.lr[: epoch + 1]]
        return hashlib.sha256(json.dumps(history).encode()).hexdigest()[:20]


def timeline(config: dict[str, Any], environment: str = "") -> Timeline:
    """The :class:`Timeline` of a resolved config (a plain dict, as ``OmegaConf.to_container``).
    ``environment`` names what decides float rounding besides the config (torch version, threads,
    device): a state saved under another one is not this job's, bit for bit."""
    deficit = hydra.utils.instantiate(config["deficit"])
    schedule = Schedule.of(config["schedule"], deficit.onset, deficit.length)
    epochs = schedule.epochs
    options = json.dumps({k: v for k, v in config["deficit"].items() if k not in WINDOW_KEYS}, sort_keys=True)
    trunk = {k: v for k, v in result_config(config).items() if k.split(".")[0] not in PER_EPOCH_PARTS}
    trunk["environment"] = environment
    return Timeline(
        trunk=json.dumps(trunk, sort_keys=True),
        deficit=tuple(options if deficit.active(e) else None for e in range(epochs)),
        lr=tuple(schedule.lr_factors()),
        epochs=epochs,
    )


def shared_epochs(a: Timeline, b: Timeline) -> int:
    """How many epochs ``a`` and ``b`` have in common from the start (0: none).

    >>> t = Timeline("{}", (None, "blur", None), (1.0, 1.0, 1.0, 1.0), 3)
    >>> shared_epochs(t, Timeline("{}", (None, "blur", "blur", None), (1.0,) * 5, 4))
    2
    """
    if a.trunk != b.trunk:
        return 0
    shared = 0
    for epoch in range(1, min(a.epochs, b.epochs) + 1):
        if a.deficit[epoch - 1] != b.deficit[epoch - 1] or a.lr[epoch] != b.lr[epoch]:
            break
        shared = epoch
    return shared
