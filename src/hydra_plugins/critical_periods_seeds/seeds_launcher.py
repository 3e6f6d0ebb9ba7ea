"""``hydra/launcher=seeds`` (conf/hydra/launcher/seeds.yaml, on this node ``seed_groups``): a multirun's jobs that differ only in ``seed`` train in one process as one
vectorised model, at most ``max_group`` seeds at a time; every other job runs as under the basic
launcher. Kept light: Hydra imports this module at every start, to find its plugins (and loads it
unregistered in sys.modules: no ``from __future__ import annotations``, the dataclass would fail)."""


from collections.abc import Sequence
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class SeedsLauncherConf:
    _target_: str = "hydra_plugins.critical_periods_seeds.seeds_launcher.SeedsLauncher"
    # Seeds trained together at most. Memory grows linearly with it (weights, gradients, optimiser
    # state and activations are each S times a lone run's); see the README's "Seeds in one process".
    max_group: int = 16


ConfigStore.instance().store(group="hydra/launcher", name="seed_groups", node=SeedsLauncherConf, provider="critical_periods")


class SeedsLauncher(Launcher):
    def __init__(self, max_group: int = 16) -> None:
        self.max_group = max_group
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.task_function = task_function
        self.config = config

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from critical_periods.seeds.launcher import launch_seed_groups

        return launch_seed_groups(self.hydra_context, self.task_function, self.config, job_overrides,
                                  initial_job_idx, self.max_group)
