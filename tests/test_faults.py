"""Faults a cluster user meets, survived with nothing lost: a disk that fills during a run."""

from __future__ import annotations

import json
import subprocess
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
