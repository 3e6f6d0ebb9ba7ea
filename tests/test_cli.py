"""The installed commands, --help and completion without the heavy imports, study files used the
wrong way, the debug group and the csv/tensorboard loggers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from critical_periods.record.summary import read_summary
from critical_periods.train import train

from conftest import TINY, run_cli

BIN = Path(sys.executable).parent


def command(name: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / name), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_installed_train_help_shows_the_projects_groups_without_importing_torch(tmp_path):
    # python -X importtime lists every module imported: torch must not be among them for --help.
    result = command("critical-periods-train", "--help", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "critical-periods-train: train a network while a deficit" in result.stdout
    assert "deficit: blur, label_permutation, noise, none, random_labels, shuffled_pixels, vertical_flip" in result.stdout
    assert "critical-periods-train -m sweep=removal" in result.stdout  # the examples
    assert "sweep: achille_cifar10, " in result.stdout and "removal" in result.stdout
    assert "sweep/wandb" not in result.stdout  # W&B's sweep files are not a config group
    assert "logger: csv, none, tensorboard, wandb" in result.stdout and "logger=[csv,tensorboard]" in result.stdout
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if "import time:" in line}
    assert "critical_periods.cli" in imported and not {"torch", "pytorch_lightning", "wandb"} & imported


def test_shell_completion_answers_with_the_groups_options():
    result = command("critical-periods-train", "-sc", "query=bash", env={"COMP_LINE": "critical-periods-train deficit="})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "deficit=vertical_flip" in result.stdout.split()


@pytest.mark.parametrize("name", ["critical-periods-analyze", "critical-periods-reproduce"])
def test_installed_analysis_commands_answer_help(name):
    result = command(name, "--help")
    assert result.returncode == 0 and "usage:" in result.stdout, result.stderr[-2000:]


def test_installed_analyze_exits_non_zero_on_a_missing_sweep(tmp_path):
    result = command("critical-periods-analyze", str(tmp_path / "nowhere"))
    assert result.returncode == 1 and "nowhere" in result.stderr + result.stdout


@pytest.mark.parametrize("study,message", [
    ("sweep=removal", "sweep=removal is a multirun study: run it with -m"),
    ("sweep=wandb/removal", "sweeps/wandb/*.yaml are W&B sweep files"),
])
def test_study_files_used_the_wrong_way_are_refused(tmp_path, study, message):
    run_dir = tmp_path / "run"
    result = run_cli(*TINY, study, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not (run_dir / "summary.json").exists()


def test_debug_runs_a_couple_of_batches_and_is_never_a_result(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("debug=default", "data.source.num_samples=1000", "model.widths=[16]",
                     f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = read_summary(run_dir)
    assert summary["status"] == "debug" and summary["epochs_trained"] == 2
    assert summary["config"]["trainer"]["limit_train_batches"] == 2
    assert not (run_dir / "wandb").exists()  # debug=default turns W&B off


@pytest.mark.parametrize("option,pattern", [("csv", "csv/version_0/metrics.csv"),
                                            ("tensorboard", "tensorboard/version_0/events.out.tfevents.*")])
def test_csv_and_tensorboard_loggers_write_beside_the_run_record(make_cfg, tmp_path, option, pattern):
    summary = train(make_cfg(f"logger={option}"))
    assert summary.status == "completed"
    written = sorted(tmp_path.glob(pattern))
    assert written and all(path.stat().st_size > 0 for path in written)
    if option == "csv":
        assert "val/acc" in written[0].read_text().splitlines()[0]
