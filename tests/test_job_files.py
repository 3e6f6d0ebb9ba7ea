"""Re-running a finished sweep leaves its finished jobs' folders untouched (Hydra would rewrite their
.hydra/ files and append to their logs before train() skips them), and still writes the files of
jobs that run."""

from __future__ import annotations

import json
import os

import pytest

from critical_periods.job_files import HYDRA_SUBDIR, job_files_subdir, job_log_file

from conftest import TINY, run_cli


def snapshot(folder):
    """Every file under ``folder``: (bytes, modification time in ns)."""
    return {p.relative_to(folder): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_rerunning_a_finished_sweep_leaves_its_jobs_untouched(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", *TINY, "deficit.length=0,1", f"hydra.sweep.dir={sweep}"]
    first = run_cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    jobs = sorted(p.parent for p in sweep.glob("*/summary.json"))
    assert len(jobs) == 2 and all((job / ".hydra" / "config.yaml").is_file() and (job / "train.log").is_file() for job in jobs)
    before = {job: snapshot(job) for job in jobs}

    # Again, with a key that does not change results (so the jobs keep their folders) set differently.
    again = run_cli(*args, "checkpoint.min_seconds=5", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("already holds a completed run") == 2  # said on the console
    for job in jobs:
        assert snapshot(job) == before[job], job.name
        assert "min_seconds: 60" in (job / ".hydra" / "config.yaml").read_text()  # the config of its results


def test_jobs_that_will_run_get_their_files(tmp_path):
    assert job_files_subdir(str(tmp_path)) == HYDRA_SUBDIR  # no summary yet
    assert job_log_file(str(tmp_path), "train") == str(tmp_path / "train.log")
    for status, files in (("running", True), ("interrupted", True), ("failed", True), ("completed", False),
                          ("diverged", False)):
        (tmp_path / "summary.json").write_text(json.dumps({"status": status}))
        assert (job_files_subdir(str(tmp_path)) == HYDRA_SUBDIR) is files, status
        assert (job_log_file(str(tmp_path), "train") != os.devnull) is files, status
    (tmp_path / "summary.json").write_text('{"status": "compl')  # torn: train() reports it, so it must run
    assert job_files_subdir(str(tmp_path)) == HYDRA_SUBDIR
