"""The W&B sweep files are generated from the Hydra studies: same keys and the same values."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import yaml

from critical_periods.sweep import wandb_files as wandb_sweeps
from critical_periods.record.summary import read_summary
from critical_periods.sweep.wandb_files import SWEEPS_DIR, grid_values, stale_files, studies


def test_committed_wandb_files_are_generated_from_the_studies():
    assert stale_files() == [], "run: python -m critical_periods.sweep.wandb_files"


def test_every_hydra_grid_point_is_a_wandb_grid_point():
    for study, params in studies().items():
        generated = yaml.safe_load((SWEEPS_DIR / "wandb" / f"{study}.yaml").read_text())
        # -m: a study only runs as a multirun (without it the run exits 2)
        assert generated["command"] == ["${env}", "${interpreter}", "-m", "critical_periods.train", "-m",
                                        f"sweep={study}", "${args_no_hyphens}"]
        for key, value in params.items():
            points = [_number_or_text(p) for p in generated["parameters"][key]["values"]]
            assert points == [_number_or_text(p.strip()) for p in _split_top_level(str(value))], (study, key)


def _number_or_text(value) -> float | str:
    try:
        return float(value)
    except ValueError:
        return str(value)


def _split_top_level(text: str) -> list[str]:
    """``"[1,2],[3]"`` -> ``["[1,2]", "[3]"]``: commas outside brackets separate grid points."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "[{"
        depth -= char in "]}"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


def test_grid_values_parse_hydra_sweep_syntax():
    assert grid_values("seed", "0,1,2") == [0, 1, 2]
    assert grid_values("optim.lr", "0.05, 0.1") == [0.05, 0.1]
    assert grid_values("deficit", "none,blur") == ["none", "blur"]
    assert grid_values("model.widths", "[512],[512,512]") == ["[512]", "[512,512]"]


def test_check_reports_a_stale_file_and_write_fixes_it(tmp_path, capsys):
    sweeps = tmp_path / "sweeps"
    shutil.copytree(SWEEPS_DIR, sweeps)
    (sweeps / "wandb" / "removal.yaml").write_text("stale\n")
    (sweeps / "wandb" / "gone.yaml").write_text("a study that no longer exists\n")
    assert wandb_sweeps.main(["--check", "--sweeps-dir", str(sweeps)]) == 1
    assert (sweeps / "wandb" / "removal.yaml").read_text() == "stale\n"  # --check writes nothing
    capsys.readouterr()
    wandb_sweeps.main(["--sweeps-dir", str(sweeps)])
    assert sorted(capsys.readouterr().out.splitlines()) == [f"written: {sweeps / 'wandb' / name}"
                                                           for name in ("gone.yaml", "removal.yaml")]
    assert (sweeps / "wandb" / "removal.yaml").read_text() == (SWEEPS_DIR / "wandb" / "removal.yaml").read_text()
    assert stale_files(sweeps) == [] and not (sweeps / "wandb" / "gone.yaml").exists()


def test_the_command_the_wandb_agent_builds_runs_one_job_of_the_study(tmp_path, monkeypatch):
    """The agent's own code (wandb_agent.Agent._command_run) builds and starts the command from the
    committed sweep file: macros substituted (``${env}`` -> /usr/bin/env, ``${interpreter}`` -> the
    ``python`` on PATH, ``${args_no_hyphens}`` -> the grid point), run in a subprocess, exit 0."""
    from wandb.wandb_agent import Agent

    sweep = yaml.safe_load((SWEEPS_DIR / "wandb" / "removal.yaml").read_text())
    # The agent mutates os.environ (run id, W&B dir): monkeypatch restores it afterwards.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SWEEP_ID", "sweep0001")
    monkeypatch.setenv("WANDB_RUN_ID", "unset")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    agent = Agent(api=None, queue=None, sweep_id="sweep0001")
    agent._sweep_command = sweep["command"]
    # One grid point of the study, plus single-valued parameters a user may add to shrink a run.
    grid = {"deficit.length": sweep["parameters"]["deficit.length"]["values"][1], "seed": 0}
    tiny = {"trainer": "cpu", "data.source.num_samples": 1000, "model.widths": "[32]", "probes": "none",
            "schedule.epochs_after_deficit": 1, "trainer.enable_progress_bar": False}
    args = {key: {"value": value} for key, value in {**grid, **tiny}.items()}
    agent._command_run({"run_id": "agentrun01", "program": sweep["program"], "args": args})
    process = agent._run_processes["agentrun01"]._popen
    assert process.args[:6] == ["/usr/bin/env", "python", "-m", "critical_periods.train", "-m", "sweep=removal"]
    assert process.args[6:] == [f"{key}={value}" for key, value in {**grid, **tiny}.items()]
    assert process.wait(timeout=300) == 0

    (summary_path,) = (tmp_path / "multirun" / "removal").glob("*/summary.json")
    summary = read_summary(summary_path.parent)
    assert summary["status"] == "completed" and summary["length"] == grid["deficit.length"]
    assert "deficit.length=10" in summary_path.parent.name  # the study's folder for that grid point
    (offline,) = (summary_path.parent / "wandb").glob("offline-run-*-agentrun01")  # the agent's run id
    # the README's `wandb sync` glob for sweeps finds it
    readme = (SWEEPS_DIR.parent / "README.md").read_text()
    assert "wandb sync multirun/*/*/wandb/offline-run-*" in readme
    assert list(tmp_path.glob("multirun/*/*/wandb/offline-run-*")) == [offline]
