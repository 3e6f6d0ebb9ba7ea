"""The Hydra entry point: ``python -m critical_periods.train [overrides]`` (``-m`` for a sweep).

``train(cfg)`` builds everything from the composed config, fits, tests, and writes the run record;
the ``@hydra.main`` function only calls it, and the tests call ``train`` directly.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.plugins.environments import SLURMEnvironment

from critical_periods.callbacks.checkpoint import ResumeCheckpoint
from critical_periods.data.datamodule import DeficitDataModule
from critical_periods.module import ClassifierModule
from critical_periods.records import SUMMARY_FILE, RunRecordLogger, read_summary, write_json_atomic
from critical_periods.resume import (
    FINISHED, check_same_run, checkpoint_epoch, last_checkpoint, trim_metrics,
)
from critical_periods.schedule import lr_factor, total_epochs
from critical_periods.wandb_run import finish_wandb, make_wandb_logger, wandb_run_id

log = logging.getLogger(__name__)


def quiet_lightning() -> None:
    """Drop Lightning's per-fit chatter (GPU/TPU availability lines, advertising tips) and a
    deprecation notice it triggers inside torch; keep every other warning."""
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)


def build_datamodule(cfg: DictConfig) -> DeficitDataModule:
    """The data module with its deficit bound to the data: loads the data and checks the deficit's
    options against it, so bad input fails here, before any model is built."""
    deficit = hydra.utils.instantiate(cfg.deficit)
    datamodule = hydra.utils.instantiate(cfg.data, deficit=deficit, seed=cfg.seed)
    datamodule.setup("fit")
    return datamodule


def build_trainer(cfg: DictConfig, max_epochs: int, loggers: list, callbacks: list) -> pl.Trainer:
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    if trainer_cfg.get("enable_progress_bar") is None:
        trainer_cfg["enable_progress_bar"] = sys.stderr.isatty()
    if SLURMEnvironment.detect():
        # submitit requeues pre-empted and timed-out jobs; Lightning's own requeue would fight it.
        trainer_cfg["plugins"] = [*trainer_cfg.get("plugins", []), SLURMEnvironment(auto_requeue=False)]
    return hydra.utils.instantiate(
        trainer_cfg,
        max_epochs=max_epochs,
        logger=loggers,
        callbacks=callbacks,
        default_root_dir=cfg.paths.output_dir,
    )


def summary_of(cfg: DictConfig, config: dict[str, Any], datamodule: DeficitDataModule, epochs: int) -> dict[str, Any]:
    """The essentials every analysis needs, beside the resolved ``config``."""
    return {
        "status": "running",
        "deficit": datamodule.deficit.kind,
        "onset": datamodule.deficit.onset,
        "length": datamodule.deficit.length,
        "epochs": epochs,
        "seed": cfg.seed,
        "name": cfg.name,
        "config": config,
    }


def final_metrics(trainer: pl.Trainer, test_results: list[dict[str, float]]) -> dict[str, float]:
    # The last epoch's train/val numbers (not val_deficit/*: its last value dates from the deficit).
    metrics = {
        f"final/{key.replace('/', '_')}": float(value)
        for key, value in trainer.callback_metrics.items()
        if key.split("/")[0] in ("train", "val", "test")
    }
    test_acc = test_results[0]["test/acc"]
    metrics.update({"final/test_acc": test_acc, "final/test_error": 1.0 - test_acc})
    metrics["final/test_loss"] = test_results[0]["test/loss"]
    return metrics


def set_threads(threads: int | None) -> None:
    """Cap torch's CPU threads. ``None``: one per job under submitit's local launcher (its jobs run at
    once on one machine), the allocation under SLURM, torch's own default otherwise."""
    if threads is None:
        if "SLURM_CPUS_PER_TASK" in os.environ:
            threads = int(os.environ["SLURM_CPUS_PER_TASK"])
        elif os.environ.get("SUBMITIT_EXECUTOR") == "local":
            threads = 1
    if threads is not None:
        torch.set_num_threads(int(threads))


def checkpoint_callbacks(cfg: DictConfig, out_dir: Path) -> list[pl.Callback]:
    every = cfg.checkpoint.every_n_epochs
    if not every:
        return []
    return [ResumeCheckpoint(out_dir, every_n_epochs=every, min_seconds=cfg.checkpoint.min_seconds)]


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit and test one run; write ``summary.json`` (status completed/diverged/failed) whatever happens.

    Returns the summary. Errors in the config are raised before anything is trained, and leave the
    run directory as it was. A finished run in ``paths.output_dir`` is returned without training; an
    interrupted one resumes from its last checkpoint (see ``critical_periods.resume``).
    """
    quiet_lightning()
    out_dir = Path(cfg.paths.output_dir)
    config = OmegaConf.to_container(cfg, resolve=True)
    previous = read_summary(out_dir)
    if previous is not None:
        check_same_run(previous, config, out_dir)
        if previous["status"] in FINISHED:
            log.info("skipped: %s already holds a %s run", out_dir, previous["status"])
            return previous
    set_threads(cfg.get("threads"))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    # Everything that can reject the config runs first.
    datamodule = build_datamodule(cfg)
    schedule = cfg.schedule
    epochs = total_epochs(schedule.mode, datamodule.deficit.end, schedule.epochs, schedule.epochs_after_deficit)
    factor = lr_factor(
        schedule.lr_schedule, schedule.lr_gamma, schedule.lr_step_size, schedule.lr_restart,
        datamodule.deficit.end, datamodule.deficit.length,
    )
    model = hydra.utils.instantiate(cfg.model)(input_shape=datamodule.input_shape, num_classes=datamodule.num_classes)
    module = ClassifierModule(model, datamodule.num_classes, hydra.utils.instantiate(cfg.optim), factor)
    callbacks = [hydra.utils.instantiate(cfg.probes)] if cfg.get("probes") else []
    callbacks += checkpoint_callbacks(cfg, out_dir)

    # From here on the run directory is this run's.
    checkpoint = last_checkpoint(out_dir) if previous is not None else None
    resumed_from = checkpoint_epoch(checkpoint) if checkpoint is not None else None
    trim_metrics(out_dir, resumed_from)
    summary = summary_of(cfg, config, datamodule, epochs)
    summary["wandb_id"] = (previous or {}).get("wandb_id") or wandb_run_id()
    if resumed_from is not None:
        summary["resumed_from_epoch"] = resumed_from
        log.info("resuming %s after epoch %d", out_dir, resumed_from)
    write_json_atomic(out_dir / SUMMARY_FILE, summary)
    loggers: list = [RunRecordLogger(out_dir)]
    if cfg.logger:
        loggers.append(make_wandb_logger(cfg, out_dir, summary["wandb_id"]))
    trainer = build_trainer(cfg, epochs, loggers, callbacks)

    try:
        started = time.perf_counter()
        trainer.fit(module, datamodule=datamodule, ckpt_path=checkpoint)
        summary["fit_seconds"] = time.perf_counter() - started
        if module.diverged:
            summary.update(status="diverged", epochs_trained=trainer.current_epoch)
        else:
            test_results = trainer.test(module, datamodule=datamodule, verbose=False)
            summary.update(final_metrics(trainer, test_results), status="completed", epochs_trained=trainer.current_epoch)
            for logger in loggers:
                logger.log_metrics({k: v for k, v in summary.items() if k.startswith("final/")}, step=trainer.global_step)
    except BaseException as error:  # KeyboardInterrupt too: the record must say the run did not finish
        summary.update(status="failed", error=f"{type(error).__name__}: {error}", traceback=traceback.format_exc())
        raise
    finally:
        write_json_atomic(out_dir / SUMMARY_FILE, summary)
        finish_wandb(failed=summary["status"] == "failed")
    log.info("%s: %s, test error %s -> %s", summary["status"], out_dir, summary.get("final/test_error"), out_dir / SUMMARY_FILE)
    return summary


@hydra.main(version_base="1.3", config_path="../../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    summary = train(cfg)
    return summary.get("final/test_error")


if __name__ == "__main__":
    main()
