"""The installed commands (``[project.scripts]``): ``critical-periods-train``, ``-analyze`` and
``-reproduce``. Each imports the heavy parts (torch, Lightning, W&B, matplotlib) only once it runs,
so ``--help`` and Hydra's shell completion answer at once:

    eval "$(critical-periods-train -sc install=bash)"     # TAB-completes groups and keys
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from critical_periods.config.paths import CONF_DIR


def train() -> None:
    """Same as ``python -m critical_periods.train``: the command line's config is checked whole
    (every job of a multirun) before Hydra starts anything."""
    from critical_periods.preflight import exit_on_bad_input

    exit_on_bad_input(sys.argv[1:])
    train_task()


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def train_task(cfg: DictConfig) -> float | None:
    from critical_periods.train import run_job

    return run_job(cfg)


def analyze() -> None:
    """Same as ``python -m critical_periods.analyze``."""
    from critical_periods.analyze import main

    sys.exit(main())


def reproduce() -> None:
    """Same as ``python -m critical_periods.reproduce``."""
    from critical_periods.reproduce import main

    main(sys.argv[1:])
    sys.exit(0)
