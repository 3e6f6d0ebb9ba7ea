"""The jobs of the multirun this job belongs to, as Hydra's basic sweeper lists them.

The sweeper writes the sweep's config to ``<sweep dir>/multirun.yaml`` before it launches a job. Its
grid (``hydra.sweeper.params`` of the study file, then the command line's ``hydra.overrides.task``)
expands into the jobs exactly as the sweeper expands it, and each job's config is composed the way
Hydra composed this one (through the ``GlobalHydra`` of this process, which submitit's launchers
restore in their workers too). Another sweeper (Optuna, Ax, ...) decides its jobs as it goes: there
are no siblings to know of, and the caller does without.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf, open_dict

from critical_periods.record.atomic import write_text_atomic

log = logging.getLogger(__name__)

MULTIRUN_FILE = "multirun.yaml"
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


@dataclass(frozen=True)
class Job:
    """One job of the sweep: its overrides, its folder and its resolved config (without ``hydra``)."""

    overrides: tuple[str, ...]
    run_dir: Path
    config: dict[str, Any]


def grid(sweep_config: Any) -> list[list[str]] | None:
    """The override list of every job of the sweep whose config is ``sweep_config`` (multirun.yaml),
    in launch order; ``None`` for a sweeper other than the basic one."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if OmegaConf.select(sweep_config, "hydra.sweeper._target_") != BASIC_SWEEPER:
        return None
    params = OmegaConf.select(sweep_config, "hydra.sweeper.params") or {}
    arguments = [f"{key}={value}" for key, value in params.items()]
    arguments += list(OmegaConf.select(sweep_config, "hydra.overrides.task") or [])
    overrides = OverridesParser.create().parse_overrides(arguments)
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def compose_job(overrides: list[str], config_name: str, sweep_dir: Path) -> Job:
    """A job's config composed as the sweeper's launcher composes it."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    cfg = GlobalHydra.instance().hydra.compose_config(
        config_name=config_name, overrides=list(overrides), run_mode=RunMode.MULTIRUN, with_log_configuration=False,
    )
    run_dir = sweep_dir / str(OmegaConf.select(cfg, "hydra.sweep.subdir"))
    with open_dict(cfg):
        del cfg["hydra"]
        cfg.paths.output_dir = str(run_dir)  # ${hydra:runtime.output_dir}: the launcher sets it
    return Job(tuple(overrides), run_dir, OmegaConf.to_container(cfg, resolve=True))


def sweep_jobs(sweep_dir: Path, config_name: str, cache_dir: Path | None = None) -> list[Job] | None:
    """Every job of the sweep in ``sweep_dir``, or ``None`` when they cannot be known (no
    multirun.yaml, another sweeper, no Hydra in this process).

    Composing costs tens of milliseconds a job and every job of the sweep needs the list, so the
    first job to compose it leaves it in ``cache_dir`` (if given), named by multirun.yaml's digest:
    a sweep of N jobs composes N configs, not N^2."""
    from hydra.core.global_hydra import GlobalHydra

    path = Path(sweep_dir) / MULTIRUN_FILE
    if not path.exists():
        return None
    text = path.read_text()
    cache = Path(cache_dir) / f"jobs-{hashlib.sha256((config_name + text).encode()).hexdigest()[:20]}.json" if cache_dir else None
    if cache is not None and cache.is_file():
        try:
            return [Job(tuple(job["overrides"]), Path(job["run_dir"]), job["config"]) for job in json.loads(cache.read_text())]
        except (OSError, ValueError, KeyError, TypeError):
            pass  # unreadable: compose again
    if not GlobalHydra.instance().is_initialized():
        return None
    jobs = grid(OmegaConf.create(text))
    if jobs is None:
        return None
    composed = [compose_job(overrides, config_name, Path(sweep_dir)) for overrides in jobs]
    if cache is not None:
        listed = [{"overrides": list(j.overrides), "run_dir": str(j.run_dir), "config": j.config} for j in composed]
        write_text_atomic(cache, json.dumps(listed))
    return composed
