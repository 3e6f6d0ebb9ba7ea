"""Everything a run trains with, built from the composed config: the data module (with its
deficit), the module, the probe callbacks and the Lightning trainer. Bad input fails here, as a
one-line :class:`ConfigError`, before the run folder is claimed."""

from __future__ import annotations

import logging
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.plugins.environments import SLURMEnvironment

from critical_periods.callbacks.checkpoint import ResumeCheckpoint
from critical_periods.config.validation import ConfigError, check_probe_size
from critical_periods.data.datamodule import DeficitDataModule
from critical_periods.models.performance import prepare_model
from critical_periods.module import ClassifierModule
from critical_periods.schedule import Schedule
from critical_periods.tracking.loggers import logger_kind


@dataclass
class Job:
    """One run, built: its config (``cfg`` composed, ``config`` resolved), folder, data, schedule,
    module and probe callbacks."""

    cfg: DictConfig
    config: dict[str, Any]
    out_dir: Path
    datamodule: DeficitDataModule
    schedule: Schedule
    module: ClassifierModule
    probes: list[pl.Callback]

    @property
    def epochs(self) -> int:
        return self.schedule.epochs


def quiet_lightning() -> None:
    """Drop Lightning's per-fit chatter (GPU/TPU availability lines, advertising tips) and a
    deprecation notice it triggers inside torch; keep every other warning."""
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    # A checkpoint from another folder (a branch point, a copied run): ResumeCheckpoint keeps no
    # "best model" paths, so there is nothing to reload and nothing to warn about.
    warnings.filterwarnings("ignore", message=r".*The dirpath has changed from.*")
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)


def from_group(cfg: DictConfig, group: str, **kwargs: Any) -> Any:
    """Instantiate config group ``group``; a :class:`ConfigError` it raises names its key inside the
    group (``widths`` -> ``model.widths``), and any other error of the config becomes one line."""
    try:
        return hydra.utils.instantiate(cfg[group], **kwargs)
    except InstantiationException as err:
        cause = err.__cause__ or err
        if isinstance(cause, ConfigError):
            raise cause.within(group) from err
        raise ConfigError(" ".join(str(cause).split())) from err


def build_datamodule(cfg: DictConfig) -> DeficitDataModule:
    """The data module with its deficit bound to the data: loads the data and checks the deficit's
    options against it, so bad input fails here, before any model is built."""
    deficit = from_group(cfg, "deficit")
    datamodule = from_group(cfg, "data", deficit=deficit, seed=cfg.seed)
    try:
        datamodule.setup("fit")
    except ConfigError as err:  # the data source's own options
        raise err.within("data.source") from err
    return datamodule


def build_job(cfg: DictConfig, config: dict[str, Any], out_dir: Path) -> Job:
    """Data, schedule, module and probe callbacks from the config. Everything that can reject the
    config or the data runs here: a bad value or a bad file is a one-line :class:`ConfigError`.
    (Bugs are not caught: they surface as tracebacks.)"""
    try:
        datamodule = build_datamodule(cfg)
        schedule = Schedule.of(cfg.schedule, datamodule.deficit.onset, datamodule.deficit.length)
        model = build_model(cfg, datamodule)
        forward = prepare_model(model, **cfg.performance)
        module = ClassifierModule(model, datamodule.num_classes, from_group(cfg, "optim"), schedule.lr_factor, forward)
        probes = [from_group(cfg, "probes")] if cfg.get("probes") else []
        logger_kind(cfg)  # an unknown logger, or tensorboard without its package
    except ConfigError:
        raise
    except (ValueError, OSError) as err:  # the project's checks of values and of data files
        raise ConfigError(" ".join(str(err).split())) from err
    check_probe_size(cfg, len(datamodule.y_train))
    return Job(cfg, config, out_dir, datamodule, schedule, module, probes)


def build_model(cfg: DictConfig, datamodule: DeficitDataModule):
    """The network for the data's input shape and classes."""
    factory = from_group(cfg, "model")
    try:
        return factory(input_shape=datamodule.input_shape, num_classes=datamodule.num_classes)
    except ConfigError as err:
        raise err.within("model") from err


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


def checkpoint_callbacks(cfg: DictConfig, out_dir: Path) -> list[pl.Callback]:
    """The resume checkpoint (none with ``checkpoint.every_n_epochs=0``)."""
    every = cfg.checkpoint.every_n_epochs
    if not every:
        return []
    return [ResumeCheckpoint(out_dir, every_n_epochs=every, min_seconds=cfg.checkpoint.min_seconds)]
