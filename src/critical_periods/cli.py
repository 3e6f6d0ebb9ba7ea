"""The installed commands (``[project.scripts]``): ``critical-periods-train``, ``-analyze`` and
``-reproduce``. Each imports the heavy parts (torch, Lightning, W&B, matplotlib) only once it runs,
so ``--help`` and Hydra's shell completion answer at once:

    eval "$(critical-periods-train -sc install=bash)"     # TAB-completes groups and keys
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from critical_periods.paths import config_dir

# An absolute path: run as a console script, Hydra would look for a python module named "conf".
CONF_DIR = str(config_dir())


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def train(cfg: DictConfig) -> float | None:
    """Same as ``python -m critical_periods.train``."""
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
