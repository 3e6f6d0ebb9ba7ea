"""One W&B run per training job: group = the experiment/sweep name, run name = the job's overrides,
config = the resolved config. Multirun jobs share a process with the basic launcher, so every job
finishes its run (``finish_wandb``) before the next starts.

W&B is a mirror: the run record (``metrics.jsonl``, ``summary.json``) is the source of truth, and a
run is never failed because of W&B. If W&B cannot start (no API key, server unreachable: the wait is
bounded by ``logger.init_timeout`` seconds) the run falls back to an offline W&B run, and to none if
that fails too; if W&B fails mid-run, it is dropped with a warning and training goes on.
"""

from __future__ import annotations

import logging
import os
import uuid
import warnings
from pathlib import Path
from typing import Any

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


class MirrorWandbLogger(WandbLogger):
    """A ``WandbLogger`` whose failures after start-up are warnings: the first one drops W&B for the
    rest of the run (the run record still gets every row)."""

    broken = False

    def _guard(self, what: str, call, *args: Any, **kwargs: Any) -> None:
        if self.broken:
            return
        try:
            call(*args, **kwargs)
        except Exception as err:  # W&B's own errors, network errors, a dead service process
            self.broken = True
            warnings.warn(f"W&B stopped working ({what}: {type(err).__name__}: {err}); training goes on, "
                          f"the run record keeps every metric", RuntimeWarning)

    def log_metrics(self, metrics, step=None) -> None:
        self._guard("log_metrics", super().log_metrics, metrics, step)

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        self._guard("log_hyperparams", super().log_hyperparams, params, *args, **kwargs)

    def after_save_checkpoint(self, checkpoint_callback) -> None:
        self._guard("after_save_checkpoint", super().after_save_checkpoint, checkpoint_callback)

    def finalize(self, status: str) -> None:
        self._guard("finalize", super().finalize, status)


def _logger(cfg: DictConfig, out_dir: Path, run_id: str | None, mode: str) -> MirrorWandbLogger:
    settings = cfg.logger
    logger = MirrorWandbLogger(
        project=settings.project,
        entity=settings.entity,
        group=cfg.name,
        name=run_name(cfg),
        tags=list(settings.tags),
        save_dir=str(out_dir),
        # Under `wandb agent` the agent assigns the run; otherwise keep ours so a resumed job continues it.
        id=None if "WANDB_SWEEP_ID" in os.environ else run_id,
        mode=mode,
        config=OmegaConf.to_container(cfg, resolve=True),
        # The bound is for waiting on a server; an offline start waits on nothing but this machine
        # (a loaded one can take a while), so it keeps W&B's own limit.
        settings=wandb.Settings(silent=True, init_timeout=float(settings.init_timeout) if mode != "offline" else 90.0),
    )
    # Lightning passes anonymous=None, which current W&B versions warn about on every run.
    logger._wandb_init.pop("anonymous", None)
    return logger


def make_wandb_logger(cfg: DictConfig, out_dir: Path, run_id: str | None = None) -> WandbLogger | None:
    """A started W&B run in ``logger.mode``; else, with a warning, an offline one; else ``None``."""
    modes = [cfg.logger.mode] + (["offline"] if cfg.logger.mode != "offline" else [])
    for mode in modes:
        logger = _logger(cfg, out_dir, run_id, mode)
        try:
            logger.experiment  # noqa: B018 - wandb.init, here rather than mid-fit
        except Exception as err:
            finish_wandb(failed=True)
            warnings.warn(f"W&B could not start in {mode} mode ({type(err).__name__}: {str(err).strip()[:300]})"
                          + ("; trying offline" if mode != modes[-1] else "; training without W&B"), RuntimeWarning)
            continue
        log.info("W&B run (%s mode) in %s/wandb", mode, out_dir)
        return logger
    return None


def finish_wandb(failed: bool) -> None:
    """Close the current W&B run, if any, so the next multirun job starts its own. Never raises."""
    try:
        if wandb.run is not None:
            wandb.finish(exit_code=1 if failed else 0)
    except Exception as err:
        warnings.warn(f"W&B could not finish its run ({type(err).__name__}: {err})", RuntimeWarning)
