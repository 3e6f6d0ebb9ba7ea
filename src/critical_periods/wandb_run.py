"""One W&B run per training job: group = the experiment/sweep name, run name = the job's overrides,
config = the resolved config. Multirun jobs share a process with the basic launcher, so every job
finishes its run (``finish_wandb``) before the next starts."""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import wandb
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import WandbLogger

log = logging.getLogger(__name__)


def run_name(cfg: DictConfig) -> str:
    """The job's command-line overrides (``deficit.length=20,seed=1``), or ``cfg.name`` without any."""
    if HydraConfig.initialized():
        overrides = HydraConfig.get().job.override_dirname
        if overrides:
            return overrides
    return cfg.name


def wandb_run_id() -> str:
    """A fresh W&B run id; the run record keeps it so a resumed job continues the same W&B run."""
    return uuid.uuid4().hex[:12]


def make_wandb_logger(cfg: DictConfig, out_dir: Path, run_id: str | None = None) -> WandbLogger:
    settings = cfg.logger
    logger = WandbLogger(
        project=settings.project,
        entity=settings.entity,
        group=cfg.name,
        name=run_name(cfg),
        tags=list(settings.tags),
        save_dir=str(out_dir),
        # Under `wandb agent` the agent assigns the run; otherwise keep ours so a resumed job continues it.
        id=None if "WANDB_SWEEP_ID" in os.environ else run_id,
        mode=settings.mode,
        config=OmegaConf.to_container(cfg, resolve=True),
        settings=wandb.Settings(silent=True),
    )
    # Lightning passes anonymous=None, which current W&B versions warn about on every run.
    logger._wandb_init.pop("anonymous", None)
    log.info("W&B run (%s mode) in %s/wandb", settings.mode, out_dir)
    return logger


def finish_wandb(failed: bool) -> None:
    """Close the current W&B run, if any, so the next multirun job starts its own."""
    if wandb.run is not None:
        wandb.finish(exit_code=1 if failed else 0)
