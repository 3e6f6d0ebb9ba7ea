"""``hydra/launcher=slurm_seeds`` (and ``local_seeds``, the same on this machine): submitit's SLURM
(local) launcher, but one submitit job per seed group instead of one per Hydra job. Each group is
trained in its job by the code of ``hydra/launcher=seeds`` (``critical_periods.seeds.launcher``), so
its records are the same. Kept light (Hydra imports this module at every start to find its plugins;
no ``from __future__ import annotations``: Hydra loads it unregistered and the dataclasses need it)."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides, setup_globals
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf, LocalQueueConf, SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
from omegaconf import OmegaConf, open_dict

MODULE = "hydra_plugins.critical_periods_seeds.submitit_seeds_launcher"


@dataclass
class SlurmSeedsLauncherConf(SlurmQueueConf):
    _target_: str = f"{MODULE}.SlurmSeedsLauncher"
    # Seeds trained together in one SLURM job at most (memory grows linearly with it).
    max_group: int = 16


@dataclass
class LocalSeedsLauncherConf(LocalQueueConf):
    _target_: str = f"{MODULE}.LocalSeedsLauncher"
    max_group: int = 16


ConfigStore.instance().store(group="hydra/launcher", name="slurm_seed_groups", node=SlurmSeedsLauncherConf,
                             provider="critical_periods")
ConfigStore.instance().store(group="hydra/launcher", name="local_seed_groups", node=LocalSeedsLauncherConf,
                             provider="critical_periods")


class SeedGroupsSubmitit(BaseSubmititLauncher):
    """Groups the jobs as ``seeds`` does (in the submitting process, from their composed configs) and
    submits one job per group; a requeued group resumes every seed from its checkpoint."""

    def __init__(self, max_group: int = 16, **params: Any) -> None:
        super().__init__(**params)
        self.max_group = max_group

    def __call__(self, group_overrides: List[List[str]], job_nums: List[int], singleton_state: Dict[type, Singleton]
                 ) -> List[JobReturn]:
        """The submitit job: compose the group's configs and train them (``seeds``' code)."""
        import submitit

        from critical_periods.seeds.launcher import run_configs

        Singleton.set_state(singleton_state)
        setup_globals()
        configs = []
        for overrides, num in zip(group_overrides, job_nums):
            sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(sweep_config.hydra.job) as job:
                job.id = submitit.JobEnvironment().job_id
                job.num = num
            configs.append(sweep_config)
        return run_configs(self.hydra_context, self.task_function, configs, self.config)

    def executor(self):
        """submitit's executor with this config's parameters, as the submitit launcher builds it."""
        import submitit

        init_keys = {"max_num_timeout"}
        init_params = {"folder": self.params["submitit_folder"],
                       **{f"{self._EXECUTOR}_{k}": v for k, v in self.params.items() if k in init_keys}}
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init_params)
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in base else f"{self._EXECUTOR}_{k}": v for k, v in self.params.items()
                                      if k not in init_keys | {"submitit_folder"}})
        return executor

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import logging

        from critical_periods.seeds.launcher import plan_or_exit

        log = logging.getLogger(__name__)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        setup_globals()
        configs = [self.hydra_context.config_loader.load_sweep_config(self.config, list(o)) for o in job_overrides]
        groups = plan_or_exit(configs, self.max_group)
        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {sweep_dir}; {len(job_overrides)} jobs in "
                 f"{len(groups)} seed group(s), one submitit job each (at most {self.max_group} seeds)")
        for group in groups:
            log.info("\tgroup: " + "; ".join(f"#{initial_job_idx + i} {' '.join(filter_overrides(job_overrides[i]))}"
                                            for i in group))
        state = Singleton.get_state()
        jobs = self.executor().map_array(self, [[list(job_overrides[i]) for i in g] for g in groups],
                                          [[initial_job_idx + i for i in g] for g in groups], [state] * len(groups))
        runs: List[Any] = [None] * len(job_overrides)
        for group, job in zip(groups, jobs):
            for index, job_return in zip(group, job.results()[0]):
                runs[index] = job_return
        return runs


class SlurmSeedsLauncher(SeedGroupsSubmitit):
    _EXECUTOR = "slurm"


class LocalSeedsLauncher(SeedGroupsSubmitit):
    _EXECUTOR = "local"
