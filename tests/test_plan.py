"""The plan command: a sweep's jobs and epochs, with and without branching, before anything runs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from critical_periods.plan import main, plan_sweep


def test_the_removal_study_trains_its_shared_blurred_epochs_once():
    plan = plan_sweep(["sweep=removal", "seed=0"])
    assert len(plan.jobs) == 6 and plan.branching
    # deficit.length 0,10,20,40,60,80, then 40 clean epochs each.
    assert plan.epochs == [40, 50, 60, 80, 100, 120] and plan.total == 450
    # Each job takes over the previous one's blurred epochs.
    assert plan.taken_over == [0, 0, 10, 20, 40, 60] and plan.total_branched == 320


def test_the_window_study_plans_its_clean_prefixes_and_seeds_share_nothing():
    plan = plan_sweep(["sweep=window", "seed=0,1"])
    assert len(plan.jobs) == 12
    per_seed = dict(zip(plan.jobs, plan.taken_over))
    first_seed = [taken for job, taken in per_seed.items() if "seed=0" in job]
    # blur@0, blur@20, blur@40, none@0, none@20, none@40 (80, 100, 120 epochs each pair).
    assert first_seed == [0, 0, 20, 40, 80, 100]
    assert plan.total == 2 * (80 + 100 + 120) * 2 and plan.total_branched == 2 * 360


def test_branching_false_plans_every_epoch():
    plan = plan_sweep(["sweep=removal", "seed=0", "branching=false"])
    assert not plan.branching and plan.total_branched == plan.total == 450


def test_the_command_prints_the_cost_and_device_hours_from_a_given_epoch_time(capsys):
    assert main(["-m", "sweep=removal", "--seconds-per-epoch", "36", "--seconds-per-job", "0"]) == 0
    out = capsys.readouterr().out
    # 900 epochs x 36 s = 9 h without branching; 640 x 36 s = 6.4 h with.
    assert "12 jobs, 900 epochs without branching" in out and "640 epochs with branching" in out
    assert "9 device-hours without branching, 6.4 with" in out and "nothing was launched" in out


def test_a_bad_override_is_one_line_before_anything_runs(capsys):
    assert main(["-m", "sweep=removal", "optim.nope=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "optim.nope" in err


@pytest.mark.slow
def test_it_times_the_first_job_here(tmp_path):
    result = subprocess.run([sys.executable, "-m", "critical_periods.plan", "-m", "sweep=removal", "seed=0",
                             "data.source.num_samples=1000", "--time"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "timed here:" in result.stdout and "device-hours without branching" in result.stdout
    assert not any(tmp_path.iterdir())  # the timed job ran in a temporary folder
