"""W&B as a W&B user expects it, checked by reading the offline transaction log back (what
``wandb sync`` would upload): one complete run per job across resumes, an epoch axis, job type and
tags, the status in the summary, and the resolved config under a sweep agent."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from wandb.sdk import wandb_setup

from critical_periods.record.metrics import read_metrics

from critical_periods.record.summary import read_summary
from critical_periods.train import train
from critical_periods.record.epochs import record_epochs

from conftest import TINY, run_cli
from test_reliability import RESUMABLE, run_with_fault
from wandb_records import read_offline_run


def only_offline_run(run_dir: Path):
    (folder,) = (run_dir / "wandb").glob("offline-run-*")  # exactly one: what a user syncs
    (log,) = folder.glob("run-*.wandb")
    return read_offline_run(log)


def test_an_interrupted_and_resumed_job_syncs_as_one_complete_run(tmp_path):
    run_dir = tmp_path / "run"
    args = [*RESUMABLE, "logger=wandb", f"hydra.run.dir={run_dir}"]
    stopped = run_with_fault("sigterm:2", *args, cwd=tmp_path)
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    assert only_offline_run(run_dir).summary["status"] == "interrupted"  # the record so far, synced-ready
    resumed = run_cli(*args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    run, summary, rows = only_offline_run(run_dir), read_summary(run_dir), read_metrics(run_dir)
    assert run.run.run_id == summary["wandb_id"]
    # every step of the record, from the first epoch (before the interruption) to the final row
    assert sorted({h["_step"] for h in run.history}) == sorted({r["step"] for r in rows})
    logged = {k for h in run.history for k in h if not k.startswith("_")}
    assert logged == {k for r in rows for k in r if k != "step"}
    assert run.summary["status"] == "completed" and run.exit_code == 0
    assert run.summary["final/test_error"] == summary["final/test_error"]
    assert "val_deficit/acc" not in run.summary  # its last value dated from the deficit window


def test_metrics_are_plotted_against_epochs_completed(make_cfg, tmp_path):
    train(make_cfg("logger=wandb", "probes=fisher", "probes.probe_size=32", "probes.early_steps=2",
                   "probes.early_until_step=3", "deficit.length=2"))
    # W&B's service was shut down when the run ended: finish() alone can return before the service
    # has written the file (a short run's held only its header), which would be read here half-written
    assert wandb_setup._singleton is None
    run, rows = only_offline_run(tmp_path), read_metrics(tmp_path)
    assert run.step_metrics == {"*": "epoch"}
    assert run.run.job_type == "train" and list(run.run.tags) == ["default", "deficit:blur"]
    by_step = {h["_step"]: h["epoch"] for h in run.history}
    steps_per_epoch = max(r["step"] for r in rows if r.get("epoch") == 0 and "fisher/trace" in r)
    assert by_step[0] == 0.0  # the probe of the initial weights
    early = [r["step"] for r in rows if "fisher/trace" in r and 0 < r["step"] < steps_per_epoch]
    assert early and all(0 < by_step[s] < 1 for s in early)  # early probes at fractions of an epoch
    assert [e for r, e in zip(rows, record_epochs(rows)) if "train/acc" in r] == [1.0, 2.0, 3.0]
    assert run.config["deficit"]["length"] == 2 and run.config["optim"]["lr"] == 0.05
    # streamed as it trained: the rows carry their real times, spread over the training
    stamps = [h["_timestamp"] for h in run.history]
    assert stamps == sorted(stamps)
    assert stamps[-1] - stamps[0] >= 0.5 * read_summary(tmp_path)["fit_seconds"] > 0


@pytest.mark.slow  # a fault injection, like tests/test_faults.py: 40 s with the resume
def test_an_offline_run_killed_midway_keeps_what_it_streamed(tmp_path):
    run_dir = tmp_path / "run"
    # long enough that W&B's service has written blocks of its file (it writes 32 KiB at a time)
    args = [*RESUMABLE, "schedule.epochs_after_deficit=40", "logger=wandb", f"hydra.run.dir={run_dir}"]
    killed = run_with_fault("kill_after_save:30", *args, cwd=tmp_path)  # SIGKILL: no clean-up at all
    assert killed.returncode == -9, killed.stderr[-3000:]
    run, rows = only_offline_run(run_dir), read_metrics(run_dir)
    streamed = {h["_step"] for h in run.history}
    assert streamed and streamed <= {r["step"] for r in rows}  # the record's steps
    trained = {h["epoch"] for h in run.history if "train/acc" in h}
    assert {1.0, 2.0, 3.0} <= trained <= {float(e) for e in range(1, 31)}  # the early epochs, none after the kill
    assert run.exit_code is None  # the run never ended: W&B shows it as crashed once synced
    resumed = run_cli(*args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    run, rows = only_offline_run(run_dir), read_metrics(run_dir)  # replaced by one complete run
    assert sorted({h["_step"] for h in run.history}) == sorted({r["step"] for r in rows})
    assert run.summary["status"] == "completed" and run.exit_code == 0


def test_a_diverged_run_shows_in_the_wandb_summary(make_cfg, tmp_path):
    summary = train(make_cfg("logger=wandb", "optim.lr=1e12", "optim.momentum=0.0", "deficit.length=3",
                             "schedule.epochs_after_deficit=5"))
    assert summary.status == "diverged"
    run = only_offline_run(tmp_path)
    assert run.summary["status"] == "diverged" and run.exit_code == 1


def test_a_sweep_agent_over_a_config_group_keeps_the_resolved_config(tmp_path):
    # What `wandb agent` hands the run: its sweep id and the grid point's parameters, which W&B locks.
    params = tmp_path / "sweep-params.yaml"
    params.write_text(yaml.safe_dump({"deficit": {"value": "vertical_flip"}, "deficit.length": {"value": 2}}))
    env = {"WANDB_SWEEP_ID": "sweep0001", "WANDB_SWEEP_PARAM_PATH": str(params), "WANDB_MODE": "offline"}
    run_dir = tmp_path / "run"
    result = run_cli(*TINY, "logger=wandb", "deficit=vertical_flip", "deficit.length=2", f"hydra.run.dir={run_dir}",
                     cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    config = only_offline_run(run_dir).config
    assert config["deficit"] == {"_target_": "critical_periods.data.deficits.VerticalFlip", "onset": 0, "length": 2,
                                 "seed": 0}
    assert config["model"]["widths"] == [32]
