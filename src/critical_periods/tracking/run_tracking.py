"""The loggers of one run beside its record, behind one object the training code calls twice:
``start`` (the loggers and callbacks to train with) and ``end`` (W&B's side of the run's end)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.loggers import Logger

from critical_periods.record.metrics import read_metrics
from critical_periods.record.summary import Summary
from critical_periods.tracking.loggers import build_loggers, uses_wandb
from critical_periods.tracking.wandb_run import (
    MirrorWandbLogger, end_live_run, start_live_run, wandb_settings, write_offline_run,
)

log = logging.getLogger(__name__)


def steps_per_epoch_to(live: MirrorWandbLogger):
    """A hook that tells the live W&B logger the epoch's length (its epoch axis needs it)."""
    def hook(trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        live.steps_per_epoch = int(trainer.num_training_batches)
    return hook


class RunTracking:
    """The run record's logger, the chosen Lightning logger and W&B (live online, or written from the
    record when the run ends). W&B never fails a run."""

    def __init__(self, cfg: DictConfig, out_dir: Path) -> None:
        self.cfg = cfg
        self.out_dir = out_dir
        self.wandb = uses_wandb(cfg)
        self.live: MirrorWandbLogger | None = None
        self.loggers: list[Logger] = []

    def start(self, summary: Summary, branched_now: bool) -> tuple[list[Logger], list[pl.Callback]]:
        """The loggers and callbacks to train with. ``branched_now``: the run's first rows are a sweep
        sibling's (a live W&B run gets them first)."""
        self.loggers = build_loggers(self.cfg, self.out_dir)
        if not self.wandb:
            return self.loggers, []
        history = read_metrics(self.out_dir) if branched_now else None
        self.live = start_live_run(self.cfg, self.out_dir, summary.wandb_id, history)
        if self.live is None:
            return self.loggers, []
        self.loggers.append(self.live)
        return self.loggers, [pl.callbacks.LambdaCallback(on_train_start=steps_per_epoch_to(self.live))]

    def finalize_files(self) -> None:
        """csv/tensorboard write their buffers out (W&B ends in :meth:`end`)."""
        for logger in self.loggers:
            if logger is not self.live:
                logger.finalize("success")

    def end(self, summary: Summary) -> None:
        """End the W&B side of a run, whatever its status: finish the live run, or (offline, or the live
        run failed) write the offline run from the record. Never raises: W&B never fails a run."""
        if not self.wandb:
            return
        if self.live is not None and end_live_run(self.live, summary):
            return
        try:
            rows = read_metrics(self.out_dir)
        except (OSError, ValueError) as err:
            log.warning("no W&B run written: the metrics could not be read (%s)", err)
            return
        folder = write_offline_run(self.cfg, self.out_dir, summary, rows)
        if folder is not None and wandb_settings(self.cfg).mode != "offline":  # online was asked for and failed
            log.warning("W&B was not reachable: the run is saved as an offline W&B run; upload it with: wandb sync %s",
                        folder)
