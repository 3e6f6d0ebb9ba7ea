"""From the group's one trainer to every seed's record: its loggers get the rows its lone run would
log, its probe callbacks run on its own weights as if their trainer were its lone one."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers import Logger
from torch import nn

from critical_periods.record.metric_names import EPOCH
from critical_periods.seeds.module import TAG_END, seed_tag
from critical_periods.seeds.stacked import copy_seed_into


def seed_row(metrics: dict[str, Any], s: int) -> dict[str, Any]:
    """Seed ``s``'s part of a group row: its tagged keys untagged, plus the untagged (shared) ones.

    >>> seed_row({"lr": 0.1, "seed0|train/loss": 2.0, "seed1|train/loss": 3.0, "epoch": 0}, 1)
    {'lr': 0.1, 'train/loss': 3.0, 'epoch': 0}
    """
    tag = seed_tag(s)
    row = {}
    for key, value in metrics.items():
        if TAG_END not in key:
            row[key] = value
        elif key.startswith(tag):
            row[key[len(tag):]] = value
    return row


class SeedLoggers(Logger):
    """The group trainer's only logger: splits every row into the seeds' rows for their loggers.

    ``stopped_after(s)``: the last epoch seed ``s`` trains (its divergence epoch), or ``None``; its
    rows of later epochs are dropped, as its lone run would not have logged them."""

    def __init__(self, loggers: list[list[Logger]], stopped_after: Callable[[int], int | None]) -> None:
        super().__init__()
        self.seed_loggers = loggers
        self.stopped_after = stopped_after

    @property
    def name(self) -> str:
        return ""

    @property
    def version(self) -> str:
        return ""

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        for loggers in self.seed_loggers:
            for logger in loggers:
                logger.log_hyperparams(params, *args, **kwargs)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        for s, loggers in enumerate(self.seed_loggers):
            row = seed_row(metrics, s)
            if not any(key != EPOCH for key in row):
                continue
            last = self.stopped_after(s)
            if last is not None and (row.get(EPOCH) is None or row[EPOCH] > last):
                continue
            for logger in loggers:
                logger.log_metrics(row, step=step)

    def save(self) -> None:
        for loggers in self.seed_loggers:
            for logger in loggers:
                logger.save()

    def finalize(self, status: str) -> None:
        for loggers in self.seed_loggers:
            for logger in loggers:
                logger.finalize(status)


class SeedTrainer:
    """What a callback sees of its trainer, for one seed: the group trainer's loops and counters, the
    seed's own data module, loggers and run folder."""

    def __init__(self, trainer: pl.Trainer, datamodule: pl.LightningDataModule, loggers: list[Logger], run_dir: Path) -> None:
        self._trainer = trainer
        self.datamodule = datamodule
        self.loggers = loggers
        self.logger = loggers[0] if loggers else None
        self.default_root_dir = str(run_dir)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trainer, name)


class SeedModule:
    """What a probe callback sees of its module: the seed's lone model (``.model``) and the device."""

    def __init__(self, model: nn.Module, device) -> None:
        self.model = model
        self.device = device


class SeedCallbacks(pl.Callback):
    """Runs every seed's own callbacks (the probes of its config) at the hooks of the group trainer.

    ``models[s]``: an unstacked copy of the architecture; it is loaded with seed ``s``'s current
    weights before any hook that may probe, so the probes compute exactly what they would on the
    lone run's model. ``callbacks[s]`` must only use the hooks forwarded here."""

    def __init__(self, callbacks: list[list[pl.Callback]], models: list[nn.Module], datamodules: list,
                 loggers: list[list[Logger]], run_dirs: list[Path]) -> None:
        super().__init__()
        self.callbacks = callbacks
        self.models = models
        self.datamodules = datamodules
        self.loggers = loggers
        self.run_dirs = run_dirs
        self._views: list[tuple[SeedTrainer, SeedModule]] = []
        # Wall seconds spent on each seed's own work (its probes, copying its weights out for them):
        # the part of the group's fit time that is the seed's alone (see ``seed_fit_seconds``).
        self.seconds = [0.0] * len(models)

    def _timed(self, s: int, work: Callable[[], None]) -> None:
        started = time.perf_counter()
        try:
            work()
        finally:
            self.seconds[s] += time.perf_counter() - started

    def _live(self, pl_module) -> list[int]:
        diverged = getattr(pl_module, "diverged", [None] * len(self.models))
        return [s for s in range(len(self.models)) if diverged[s] is None and self.callbacks[s]]

    def _sync(self, pl_module, s: int) -> None:
        copy_seed_into(pl_module.model, s, self.models[s])

    def on_fit_start(self, trainer, pl_module) -> None:
        for model in self.models:
            model.to(pl_module.device)
        self._views = [
            (SeedTrainer(trainer, self.datamodules[s], self.loggers[s], self.run_dirs[s]), SeedModule(self.models[s], pl_module.device))
            for s in range(len(self.models))
        ]
        for s in self._live(pl_module):
            self._timed(s, lambda: [callback.on_fit_start(*self._views[s]) for callback in self.callbacks[s]])

    def on_train_start(self, trainer, pl_module) -> None:
        for s in self._live(pl_module):
            self._timed(s, lambda: self._train_start(pl_module, s))

    def _train_start(self, pl_module, s: int) -> None:
        self._sync(pl_module, s)
        for callback in self.callbacks[s]:
            callback.on_train_start(*self._views[s])

    @staticmethod
    def _wants_batch_end(callback: pl.Callback, step: int) -> bool:
        # Most steps need no per-seed call at all: a call per seed and step would cost more than the
        # vectorised step saves on a small model.
        if not hasattr(callback, "early_steps"):
            return True
        return getattr(callback, "delta_loss", None) is not None or step in callback.early_steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        for s in self._live(pl_module):
            wanted = [c for c in self.callbacks[s] if self._wants_batch_end(c, step)]
            if wanted:
                self._timed(s, lambda: self._batch_end(pl_module, s, wanted, step, outputs, batch_idx))

    def _batch_end(self, pl_module, s: int, wanted: list[pl.Callback], step: int, outputs, batch_idx: int) -> None:
        synced = False
        for callback in wanted:
            if step in getattr(callback, "early_steps", ()) and not synced:
                self._sync(pl_module, s)
                synced = True
            callback.on_train_batch_end(*self._views[s], {"loss": outputs["seed_losses"][s]}, None, batch_idx)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        for s in self._live(pl_module):
            self._timed(s, lambda: self._epoch_end(pl_module, s))

    def _epoch_end(self, pl_module, s: int) -> None:
        self._sync(pl_module, s)
        for callback in self.callbacks[s]:
            callback.on_train_epoch_end(*self._views[s])


def seed_fit_seconds(group_seconds: float, own_seconds: list[float]) -> list[float]:
    """Each seed's ``fit_seconds``: its own work (its probes) plus an equal share of the rest of the
    group's fit (the vectorised steps, validation, checkpoints), so the seeds' times add up to the
    group's and a seed with costlier probes is charged for them.

    >>> seed_fit_seconds(10.0, [1.0, 3.0])
    [4.0, 6.0]
    """
    shared = max(group_seconds - sum(own_seconds), 0.0) / len(own_seconds)
    return [shared + own for own in own_seconds]
