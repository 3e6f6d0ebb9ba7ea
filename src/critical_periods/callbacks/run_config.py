"""Every checkpoint carries the resolved config it was trained with, so a model can be rebuilt from
the checkpoint alone (``critical_periods.reload.load_run``)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl

# The checkpoint key; reload.py reads it.
CONFIG_IN_CHECKPOINT = "critical_periods_config"


class StoreRunConfig(pl.Callback):
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[CONFIG_IN_CHECKPOINT] = self.config
