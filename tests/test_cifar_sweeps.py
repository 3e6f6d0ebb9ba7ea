"""The paper-scale CIFAR-10 studies: each composes with the SLURM launcher, resolves, and builds a job
of its grid with the papers' recipe."""

import hydra
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from critical_periods.schedule import total_epochs

from conftest import CONF_DIR

PAPER_SWEEPS = ["achille_cifar10", "achille_cifar10_kinds", "break_even_cifar10"]


def compose_job(sweep, tmp_path, *overrides, hydra_config=True):
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        return compose("train", overrides=[f"sweep={sweep}", "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                                           f"hydra.sweep.dir={tmp_path}", f"paths.output_dir={tmp_path}", *overrides],
                       return_hydra_config=hydra_config)


def first_values(cfg):
    """One job of the grid: the first value of every swept key, as overrides."""
    return [f"{key}={str(values).split(',')[0]}" for key, values in cfg.hydra.sweeper.params.items()]


@pytest.mark.parametrize("sweep", PAPER_SWEEPS)
def test_paper_sweep_composes_with_slurm_and_every_value_resolves(sweep, tmp_path):
    cfg = compose_job(sweep, tmp_path)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher") and launcher["partition"] == "gpu"
    assert launcher["submitit_folder"] == f"{tmp_path}/.submitit/%j"
    # The job's own config (what train() sees; hydra.runtime is only filled in inside a launched job).
    job = compose_job(sweep, tmp_path, *first_values(cfg), hydra_config=False)
    resolved = OmegaConf.to_container(job, resolve=True)  # raises on any interpolation that does not resolve
    assert resolved["name"] == sweep and resolved["data"]["source"]["_target_"].endswith("load_cifar10")
    # The job's parts build (CIFAR files are not read here: the loader is a partial).
    datamodule = hydra.utils.instantiate(job.data, deficit=hydra.utils.instantiate(job.deficit), seed=job.seed)
    assert datamodule.augment == job.data.augment
    model = hydra.utils.instantiate(job.model)(input_shape=(3, 32, 32), num_classes=10)
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize("sweep", ["achille_cifar10", "achille_cifar10_kinds"])
def test_achille_recipe(sweep, tmp_path):
    cfg = compose_job(sweep, tmp_path, "deficit.length=40")
    assert cfg.model._target_.endswith("AllCNN") and cfg.model.width == 96
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == (0.075, 0.9, 5e-4)
    assert (cfg.schedule.lr_schedule, cfg.schedule.lr_gamma, cfg.data.batch_size) == ("exponential", 0.97, 128)
    assert total_epochs(cfg.schedule.mode, 40, cfg.schedule.epochs, cfg.schedule.epochs_after_deficit) == 200
    grid = str(cfg.hydra.sweeper.params["deficit.length"]).split(",")
    assert grid[0] == "0" and len(grid) >= 4  # the no-deficit baseline and several removal epochs
    assert cfg.data.augment is True


def test_achille_kinds_sweeps_every_deficit():
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["sweep=achille_cifar10_kinds"], return_hydra_config=True)
    kinds = set(str(cfg.hydra.sweeper.params["deficit"]).split(","))
    assert kinds == {"none", "blur", "vertical_flip", "label_permutation", "noise"}


def test_break_even_cifar10_grid(tmp_path):
    cfg = compose_job("break_even_cifar10", tmp_path)
    params = cfg.hydra.sweeper.params
    assert cfg.model._target_.endswith("SimpleCNN") and cfg.deficit._target_.endswith("NoDeficit")
    assert cfg.schedule.lr_schedule == "constant" and cfg.schedule.epochs == 200
    assert {"0.01", "0.1"} <= set(str(params["optim.lr"]).split(","))
    assert "128" in str(params["data.batch_size"]).split(",")
    assert cfg.probes.hessian is not None and cfg.probes.covariance is not None
