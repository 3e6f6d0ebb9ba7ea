"""The work of ``hydra/launcher=seeds`` (the plugin class is ``hydra_plugins.critical_periods_seeds``).

Like Hydra's basic launcher it composes every job's config and runs the jobs in this process; unlike
it, the jobs whose configs differ only in ``seed`` are trained together by
:func:`critical_periods.seeds.group.train_group`. Every job's folder gets what the basic launcher
writes there: Hydra writes ``.hydra/`` and the job's log file (``run_job`` with a task that only
checks and resolves the job's config), and the group writes the run record. A group of one job, and
a model that cannot be vectorised, run through Hydra's ``run_job`` with the training task itself,
exactly as under the basic launcher.
"""

from __future__ import annotations

import copy
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from critical_periods.exits import with_exit_codes
from critical_periods.seeds.group import plan_groups, train_group
from critical_periods.sweep.launch import check_launch

log = logging.getLogger(__name__)

JOB_DIR_KEY, JOB_SUBDIR_KEY = "hydra.sweep.dir", "hydra.sweep.subdir"


def launch_seed_groups(hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig,
                       job_overrides: Sequence[Sequence[str]], initial_job_idx: int, max_group: int) -> list[JobReturn]:
    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    log.info(f"Launching {len(job_overrides)} jobs locally, the seeds of a config together (at most {max_group})")
    sweep_configs = []
    for offset, overrides in enumerate(job_overrides):
        idx = initial_job_idx + offset
        log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = idx
            sweep_config.hydra.job.num = idx
        sweep_configs.append(sweep_config)
    groups = plan_or_exit(sweep_configs, max_group)

    runs: list[JobReturn | None] = [None] * len(sweep_configs)
    for group in groups:
        returns = run_configs(hydra_context, task_function, [sweep_configs[i] for i in group], config)
        for index, job_return in zip(group, returns):
            runs[index] = job_return
    return runs


def plan_or_exit(sweep_configs: list[DictConfig], max_group: int) -> list[list[int]]:
    """:func:`plan_groups`, or exit 2 with one line naming the bad ``max_group``."""
    try:
        return plan_groups(sweep_configs, max_group)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def run_configs(hydra_context: HydraContext, task_function: TaskFunction, configs: list[DictConfig],
                config: DictConfig) -> list[JobReturn]:
    """One seed group's jobs (composed sweep configs), trained together; one job, or a model that
    cannot be vectorised, the basic launcher's way. Used in this process (``seeds``) and in a
    submitit job per group (``slurm_seeds``, ``local_seeds``)."""
    returns = run_group(hydra_context, task_function, configs, config) if len(configs) > 1 else None
    if returns is None:
        returns = [run_basic(hydra_context, task_function, c, config) for c in configs]
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    return returns


def run_basic(hydra_context: HydraContext, task_function: TaskFunction, sweep_config: DictConfig,
              config: DictConfig) -> JobReturn:
    job_return = run_job(hydra_context=hydra_context, task_function=task_function, config=sweep_config,
                         job_dir_key=JOB_DIR_KEY, job_subdir_key=JOB_SUBDIR_KEY)
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    return job_return


def run_group(hydra_context: HydraContext, task_function: TaskFunction,
              sweep_configs: list[DictConfig], config: DictConfig) -> list[JobReturn] | None:
    """Set up every job's folder as ``run_job`` does, then train the jobs as one group. ``None``: the
    model cannot be vectorised (nothing was trained)."""
    resolved: list[DictConfig] = []
    hydra_configs: list[DictConfig] = []

    def capture(cfg: DictConfig) -> None:
        """The task ``run_job`` runs for a grouped job: the checks ``train.run_job`` makes before
        training, and the job's config with its ``${hydra:...}`` values resolved while they are its own."""
        guarded(check_launch, cfg)
        job = copy.deepcopy(cfg)
        OmegaConf.resolve(job)
        resolved.append(job)
        hydra_configs.append(copy.deepcopy(HydraConfig.instance().cfg))

    returns = [run_job(hydra_context=hydra_context, task_function=capture, config=c,
                       job_dir_key=JOB_DIR_KEY, job_subdir_key=JOB_SUBDIR_KEY) for c in sweep_configs]
    # The group's lines go to the console, not into the last job's log file (each seed's own lines
    # are added to its job's log by the group).
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    failed = [r for r in returns if r.status != JobStatus.COMPLETED]
    if failed:
        return returns
    try:
        summaries = guarded(train_group, resolved, hydra_configs)
    except Exception as error:  # as run_job records a task's failure: every job of the group failed
        for job_return in returns:
            job_return.status = JobStatus.FAILED
            job_return.return_value = error
        return returns
    if summaries is None:
        return None
    for job_return, summary in zip(returns, summaries):
        job_return.return_value = summary.test_error if summary is not None else None
    return returns


def guarded(function, *args):
    """``function(*args)`` with ``train.run_job``'s exit codes (:mod:`critical_periods.exits`)."""
    return with_exit_codes(function, *args, where="the seed group's jobs", rerun="each job resumes")
