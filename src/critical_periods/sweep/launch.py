"""How a study may be launched: checks of the Hydra mode a job runs in."""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from critical_periods.config.validation import ConfigError


def launch_error(study: str | None, multirun: bool) -> str | None:
    """A study file used the wrong way: ``sweep=NAME`` without ``-m`` would silently train one run of
    its grid, and ``sweep=wandb/NAME`` is a W&B sweep file, not a Hydra study."""
    if not study:
        return None
    if study.startswith("wandb/"):
        return (f"sweep={study} is not allowed: sweeps/wandb/*.yaml are W&B sweep files for `wandb sweep "
                f"sweeps/{study}.yaml`; the Hydra study is sweep={study.removeprefix('wandb/')} (with -m)")
    if not multirun:
        return (f"sweep={study} is a multirun study: run it with -m (python -m critical_periods.train -m "
                f"sweep={study}); for one of its jobs, give that job's values without sweep=")
    return None


def check_launch(cfg: DictConfig) -> None:
    """:func:`launch_error` for the running job (the command line was checked before it started;
    this catches a job started some other way, e.g. from a notebook)."""
    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    problem = launch_error(hydra_cfg.runtime.choices.get("sweep"), hydra_cfg.mode == RunMode.MULTIRUN)
    if problem is not None:
        raise ConfigError(problem)


def multirun_dirs() -> tuple[Path, Path] | None:
    """``(this job's folder, its sweep folder)`` in a Hydra multirun, else ``None``."""
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    run_dir = Path(hydra_cfg.runtime.output_dir)
    depth = len(Path(hydra_cfg.sweep.subdir).parts)
    return run_dir, Path(*run_dir.parts[: len(run_dir.parts) - depth])
