"""Where the project's Hydra configs and study files are, in a checkout and in an installed wheel
alike. One place, so the entry points, the cost plan, the reproduction and the W&B sweep files agree.

``critical_periods/conf`` is a symlink to the top-level ``conf/`` in a checkout and a real folder in a
wheel (the build copies what the link points to; pyproject.toml, package-data). The studies are its
``sweep/`` group (a link to the top-level ``sweeps/`` in a checkout).
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]


def config_dir() -> Path:
    """The Hydra config folder (``train.yaml`` and the groups); absolute, as ``@hydra.main`` needs
    when it runs as a console script (a relative path would be read as a Python module name)."""
    conf = (PACKAGE_DIR / "conf").resolve()
    if not (conf / "train.yaml").is_file():
        raise FileNotFoundError(f"the configs are missing: no {conf / 'train.yaml'} (a build that left out "
                                "critical_periods/conf; reinstall the package)")
    return conf


def sweeps_dir() -> Path:
    """The studies (``sweep=NAME`` reads ``NAME.yaml`` here) and their W&B files (``wandb/``)."""
    return (config_dir() / "sweep").resolve()


CONF_DIR = str(config_dir())
SWEEPS_DIR = sweeps_dir()
