"""Multiruns for real (basic and submitit-local launchers), skipping finished jobs, resuming a killed
one, and the sweep and launcher configs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from critical_periods.record.metrics import read_metrics

from critical_periods.record.summary import read_summary

from conftest import CONF_DIR, TINY, run_cli

SWEEPS = sorted(p.stem for p in (Path(CONF_DIR).parent / "sweeps").glob("*.yaml"))


def records(sweep_dir: Path) -> dict[str, tuple[str, str]]:
    """Job folder name -> (summary.json text, metrics.jsonl text)."""
    return {
        p.parent.name: (p.read_text(), (p.parent / "metrics.jsonl").read_text())
        for p in sweep_dir.glob("*/summary.json")
    }


@pytest.mark.parametrize("launcher", ["basic", pytest.param("local", marks=pytest.mark.slow)])
def test_three_job_multirun_then_rerun_skips_every_job(tmp_path, launcher):
    sweep_dir = tmp_path / "sweep"
    args = ["-m", *TINY, "deficit.length=0,1,2", f"hydra.sweep.dir={sweep_dir}"]
    if launcher == "local":
        args.append("hydra/launcher=local")
    first = run_cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    before = records(sweep_dir)
    assert len(before) == 3
    # Job folders are named from their overrides (logger is left out: it does not change results).
    assert all("deficit.length=" in name and "logger" not in name for name in before)
    assert sorted(json.loads(s)["length"] for s, _ in before.values()) == [0, 1, 2]
    assert all(json.loads(s)["status"] == "completed" for s, _ in before.values())

    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert records(sweep_dir) == before  # untouched
    # Said on the console (submitit's job logs under the local launcher), not in the finished jobs' logs.
    console = "".join(p.read_text() for p in sweep_dir.glob(".submitit/*/*.out")) + again.stdout + again.stderr
    assert console.count("skipped:") >= 3
    assert "skipped:" not in "".join(p.read_text() for p in sweep_dir.glob("*/train.log"))


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    args = [*TINY, "schedule.epochs_after_deficit=300", "checkpoint.min_seconds=0", f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "critical_periods.train", *args], cwd=tmp_path, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        epochs = {r.get("epoch") for r in read_metrics(run_dir) if "val/acc" in r} if (run_dir / "metrics.jsonl").exists() else set()
        if len(epochs) >= 3 and (run_dir / "checkpoints" / "last.ckpt").exists():
            break
        time.sleep(0.1)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)  # no chance to write anything more
    process.wait()
    assert read_summary(run_dir)["status"] == "running"

    resumed = run_cli(*args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = read_summary(run_dir)
    assert summary["status"] == "completed" and summary["resumed_from_epoch"] >= 1
    val_epochs = [r["epoch"] for r in read_metrics(run_dir) if "val/acc" in r]
    assert val_epochs == list(range(summary["epochs"]))  # every epoch once: none lost, none repeated


def test_rerun_with_a_different_config_in_the_same_folder_is_refused(make_cfg, tmp_path):
    from critical_periods.train import train

    train(make_cfg())
    with pytest.raises(ValueError, match=r"different config \(differs in: optim.lr\)"):
        train(make_cfg("optim.lr=0.2"))
    assert read_summary(tmp_path)["config"]["optim"]["lr"] == 0.05  # the first run's record is intact


@pytest.mark.parametrize("sweep", SWEEPS)
def test_every_sweep_composes_with_a_grid_and_a_name(sweep):
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"sweep={sweep}"], return_hydra_config=True)
    assert cfg.name == sweep
    params = cfg.hydra.sweeper.params
    assert params and "seed" in params


def test_slurm_launcher_composes_and_its_parameters_resolve(tmp_path):
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                                          "hydra.launcher.timeout_min=30", f"hydra.sweep.dir={tmp_path}"],
                      return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert (launcher["partition"], launcher["timeout_min"], launcher["gpus_per_node"]) == ("gpu", 30, 1)
    assert launcher["submitit_folder"] == f"{tmp_path}/.submitit/%j"
    assert launcher["max_num_timeout"] > 0  # pre-empted jobs are requeued and resume


@pytest.mark.parametrize("sweep", SWEEPS)
def test_wandb_sweep_file_matches_its_hydra_study(sweep):
    # Plain YAML: W&B's ${...} macros are not OmegaConf interpolations.
    wandb_sweep = yaml.safe_load((Path(CONF_DIR).parent / "sweeps" / "wandb" / f"{sweep}.yaml").read_text())
    assert f"sweep={sweep}" in wandb_sweep["command"] and "${args_no_hyphens}" in wandb_sweep["command"]
    # What the agent would run: the study plus one value per parameter, as Hydra overrides.
    overrides = [f"{key}={spec['values'][0]}" for key, spec in wandb_sweep["parameters"].items()]
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"sweep={sweep}", *overrides], return_hydra_config=True)
    assert set(wandb_sweep["parameters"]) == set(cfg.hydra.sweeper.params)


@pytest.mark.parametrize("min_seconds,expected", [(0, [False, True, True]), (3600, [False, False, False])])
def test_resume_checkpoint_is_throttled_by_wall_time_but_always_written_after_the_last_epoch(tmp_path, min_seconds, expected):
    import pytorch_lightning as pl
    import torch

    from critical_periods.callbacks.checkpoint import ResumeCheckpoint
    from critical_periods.data.datamodule import DeficitDataModule
    from critical_periods.data.synthetic import load_synthetic
    from critical_periods.models.mlp import MLP
    from critical_periods.module import ClassifierModule
    from critical_periods.record.resume import checkpoint_epoch, last_checkpoint

    class Seen(pl.Callback):
        def __init__(self):
            self.exists = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == 0:  # once the epoch-start hooks have run (the checkpoint is promoted by then)
                self.exists.append(last_checkpoint(tmp_path) is not None)

    datamodule = DeficitDataModule(lambda: load_synthetic(num_samples=200, test_samples=50, input_dim=8, num_classes=3))
    datamodule.setup()
    module = ClassifierModule(MLP(datamodule.input_shape, 3, widths=[8]), 3, lambda p: torch.optim.SGD(p, lr=0.1),
                              lr_factor=lambda epoch: 1.0)
    seen = Seen()
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[seen, ResumeCheckpoint(tmp_path, min_seconds=min_seconds)])
    trainer.fit(module, datamodule=datamodule)
    assert seen.exists == expected
    assert checkpoint_epoch(last_checkpoint(tmp_path)) == 2  # the last epoch is always saved
    assert not list(tmp_path.rglob("*.pending"))  # and made the resume checkpoint at the end
