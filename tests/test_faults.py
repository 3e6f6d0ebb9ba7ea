"""Faults a cluster user meets, survived with nothing lost: a disk that fills during a run or under a
sweep, and two sweeps racing on one folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli

# A run whose checkpoint (weights + momentum, ~2.3 MB) fits a 4 MB disk once, not twice.
ARGS = ["data.source.num_samples=1000", "model.widths=[512,512]", "logger=none", "probes=none", "deficit.length=2",
        "schedule.epochs_after_deficit=4", "checkpoint.min_seconds=0", "trainer.enable_progress_bar=false"]


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB tmpfs (root only); ``resize(mb)`` frees space as a user deleting files would."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")

    def resize(mb: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={mb}m", str(mount)], check=True)

    yield mount, resize
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_a_full_disk_fails_the_run_honestly_and_the_same_command_resumes_once_space_is_freed(tmp_path, small_disk):
    mount, resize = small_disk
    run_dir = mount / "run"
    full = run_cli(*ARGS, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert full.returncode == 1 and "Traceback" not in full.stderr, full.stderr[-3000:]
    errors = [line for line in full.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: no space left on device for {run_dir}: the run is recorded there as failed; free space "
                      "and run the same command again: it resumes from its last good checkpoint"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"].startswith("no space left on device")
    assert (run_dir / "checkpoints" / "last.ckpt").exists()  # the last good one
    assert not list(run_dir.rglob("*.pending")) and not list(run_dir.rglob(".*.tmp"))

    resize(64)
    resumed = run_cli(*ARGS, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    reference = run_cli(*ARGS, f"hydra.run.dir={tmp_path / 'reference'}", cwd=tmp_path)
    assert reference.returncode == 0
    assert json.loads((run_dir / "summary.json").read_text())["resumed_from_epoch"] is not None
    assert rows(run_dir) == rows(tmp_path / "reference")  # every row once, bitwise the uninterrupted run's


def job_rows(sweep_dir: Path) -> dict[str, list[dict]]:
    """Every job folder's metric rows, by folder name."""
    return {p.parent.name: rows(p.parent) for p in sorted(sweep_dir.glob("*/summary.json"))}


def statuses(sweep_dir: Path) -> list[str]:
    return [json.loads(p.read_text())["status"] for p in sorted(sweep_dir.glob("*/summary.json"))]


@pytest.mark.slow
def test_a_sweep_on_a_full_disk_stops_honestly_and_its_rerun_finishes_every_job(tmp_path, small_disk):
    mount, resize = small_disk
    sweep = mount / "sweep"
    full = run_cli("-m", "seed=0,1", *ARGS, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert full.returncode == 1 and "Traceback" not in full.stderr, full.stderr[-3000:]
    assert [line for line in full.stderr.splitlines() if line.startswith("error: no space left on device")]
    assert statuses(sweep) == ["failed"]  # the job that hit the full disk; the next one never started
    assert not list(sweep.rglob("*.pending")) and not list(sweep.rglob(".*.tmp"))

    resize(64)
    rerun = run_cli("-m", "seed=0,1", *ARGS, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    reference = run_cli("-m", "seed=0,1", *ARGS, f"hydra.sweep.dir={tmp_path / 'reference'}", cwd=tmp_path)
    assert reference.returncode == 0
    assert statuses(sweep) == ["completed", "completed"]
    assert job_rows(sweep) == job_rows(tmp_path / "reference")  # bitwise the uninterrupted sweep's rows


RACE_ARGS = ["data.source.num_samples=1000", "model.widths=[512,512]", "logger=none", "probes=none", "deficit.length=2",
             "schedule.epochs_after_deficit=100", "trainer.enable_progress_bar=false"]  # ~10 s a job


@pytest.mark.slow
def test_two_sweeps_racing_on_one_folder_train_each_job_once(tmp_path):
    """A user submits the same sweep twice: each job is trained by whichever process claims it first;
    the other skips it (held, or already completed), and no record is written twice."""
    sweep = tmp_path / "sweep"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "critical_periods.train", "-m", "seed=0,1,2", *RACE_ARGS, f"hydra.sweep.dir={sweep}"]
    first = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(sweep.glob("*seed=0/metrics.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.1)  # the first sweep is training its first job
    second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0 and second.returncode == 0, err[-2000:] + second.stderr[-2000:]
    assert "is held by pid" in second.stdout + second.stderr  # it met the first one's claimed job
    reference = run_cli("-m", "seed=0,1,2", *RACE_ARGS, f"hydra.sweep.dir={tmp_path / 'reference'}", cwd=tmp_path)
    assert reference.returncode == 0
    assert statuses(sweep) == ["completed"] * 3
    assert job_rows(sweep) == job_rows(tmp_path / "reference")
