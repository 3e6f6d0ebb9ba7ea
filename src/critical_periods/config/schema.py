"""The config's schema: Hydra structured configs that type-check the top-level keys (and the
schedule, checkpoint, performance and paths sections) when Hydra composes, before anything runs.
``seed=1.5`` or ``schedule.epochs=ten`` fails there; a key nothing reads (``+seed2=1``) too.

The config groups (data, model, deficit, optim, probes, trainer, logger) are ``Any`` here: each
option is a different class, and ``config.validation.check_targets`` checks their keys against the
signature of the class they build. What a type cannot say (ranges, choices that depend on the data)
is checked by ``config.validation``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore

SCHEMA_NAME = "train_schema"


@dataclass
class ScheduleConfig:
    mode: str = "after_deficit"
    epochs_after_deficit: int = 30
    epochs: int = 60
    lr_schedule: str = "exponential"
    lr_gamma: float = 0.97
    lr_step_size: int = 30
    lr_restart: bool = False


@dataclass
class PerformanceConfig:
    channels_last: bool = False
    compile: bool = False


@dataclass
class CheckpointConfig:
    every_n_epochs: int = 1
    min_seconds: float = 60.0


@dataclass
class PathsConfig:
    data_dir: str = "data"
    output_dir: str = "outputs"


@dataclass
class TrainConfig:
    data: Any = None
    model: Any = None
    deficit: Any = None
    optim: Any = None
    probes: Any = None
    trainer: Any = None
    logger: Any = None
    name: str = "default"
    seed: int = 0
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    threads: Optional[int] = None  # noqa: UP007 - OmegaConf reads typing.Optional, not "int | None" strings
    performance: PerformanceConfig = field(default_factory=PerformanceConfig)
    branching: bool = True
    debug_run: bool = False
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)


def register_schema() -> None:
    """Put the schema where ``conf/train.yaml``'s defaults list finds it (idempotent)."""
    ConfigStore.instance().store(name=SCHEMA_NAME, node=TrainConfig)


register_schema()
