"""Exact checkpoint branching: a sweep's jobs that share their first epochs train them once, and every
branched job's record is bitwise the record of the same job run alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from critical_periods.record.layout import BRANCH_STORE_DIR as STORE_DIR
from critical_periods.sweep.branch_store import BranchStore
from critical_periods.sweep.timeline import shared_epochs, timeline
from critical_periods.record.layout import STIFFNESS_FILE
from critical_periods.record.layout import REPRESENTATIONS_DIR
from critical_periods.record.metrics import read_metrics
from critical_periods.record.summary import read_summary

from conftest import TINY, run_cli

TIMING = {"probe/seconds"}  # a wall time; every other number must be equal bit for bit


def config(make_cfg, *overrides):
    from omegaconf import OmegaConf

    return OmegaConf.to_container(make_cfg(*overrides), resolve=True)


# -- when jobs share state ------------------------------------------------------------------------------

def test_removal_jobs_share_the_blurred_epochs_both_run(make_cfg):
    t = {n: timeline(config(make_cfg, f"deficit.length={n}", "schedule.epochs_after_deficit=3")) for n in (0, 2, 4)}
    assert shared_epochs(t[2], t[4]) == 2  # blurred 0..1 in both; epoch 2 is clean in one, blurred in the other
    assert shared_epochs(t[0], t[2]) == 0  # epoch 0 is clean in one only
    assert t[2].key(2) == t[4].key(2) and t[2].key(3) != t[4].key(3)
    assert shared_epochs(t[2], t[2]) == t[2].epochs == 5


def test_window_jobs_share_their_clean_epochs_and_a_clean_run_shares_its_whole_length(make_cfg):
    blur = {o: timeline(config(make_cfg, "deficit.length=2", f"deficit.onset={o}")) for o in (0, 1, 3)}
    none = {o: timeline(config(make_cfg, "deficit=none", "deficit.length=2", f"deficit.onset={o}")) for o in (0, 1, 3)}
    assert shared_epochs(blur[1], blur[3]) == 1 and shared_epochs(blur[3], none[0]) == 3
    assert shared_epochs(none[0], none[3]) == none[0].epochs == 3  # never any deficit: only the length differs


@pytest.mark.parametrize("differs", ["seed=1", "optim.lr=0.2", "probes=fisher", "deficit.size=5"])
def test_jobs_that_differ_in_anything_else_share_nothing(make_cfg, differs):
    base = timeline(config(make_cfg, "deficit.length=2"))
    other = timeline(config(make_cfg, "deficit.length=3", differs))
    assert shared_epochs(base, other) == 0


def test_an_lr_restart_at_the_deficit_end_stops_the_sharing_where_the_schedules_part(make_cfg):
    restart = ("schedule.lr_restart=true",)
    short, long = (timeline(config(make_cfg, f"deficit.length={n}", *restart)) for n in (1, 3))
    # Both blurred in epoch 0 at the same lr, but the state after it holds the lr of epoch 1, where the
    # short window's schedule restarts (factor 1) and the long one's goes on (0.97): nothing is shared.
    assert short.lr[1] == 1.0 and long.lr[1] == pytest.approx(0.97)
    assert shared_epochs(short, long) == 0


# -- the records are bitwise those of lone jobs ----------------------------------------------------------

REMOVAL = ("deficit.length=0,1,2,3", "schedule.epochs_after_deficit=2", "probes=fisher", "probes.probe_size=64")


def comparable(rows):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def run_sweep(tmp_path: Path, name: str, *args: str) -> Path:
    sweep_dir = tmp_path / name
    result = run_cli("-m", *TINY, "trainer=cpu", "checkpoint.min_seconds=0", *args, f"hydra.sweep.dir={sweep_dir}",
                     cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return sweep_dir


def jobs(sweep_dir: Path) -> dict[str, Path]:
    return {p.parent.name: p.parent for p in sweep_dir.glob("*/summary.json")}


def assert_same_records(branched: Path, alone: Path) -> dict[tuple, int | None]:
    """Every job's metrics and final numbers equal; returns (deficit, onset, length) -> branched_from_epoch."""
    a, b = jobs(branched), jobs(alone)
    assert a.keys() == b.keys() and a
    taken = {}
    for name in a:
        got, expected = read_summary(a[name]), read_summary(b[name])
        assert got["status"] == expected["status"] == "completed"
        assert {k: v for k, v in got.items() if k.startswith("final/")} == {
            k: v for k, v in expected.items() if k.startswith("final/")}, name
        assert comparable(read_metrics(a[name])) == comparable(read_metrics(b[name])), name
        assert expected["branched_from_epoch"] is None
        taken[got["deficit"], got["onset"], got["length"]] = got["branched_from_epoch"]
    return taken


# Noise: its draws are seeded per batch; a stateful generator would give the branch other noise.
@pytest.mark.parametrize("deficit", ["blur", pytest.param("noise", marks=pytest.mark.slow)])
def test_a_branched_removal_sweep_records_exactly_what_lone_jobs_record(tmp_path, deficit):
    grid = (f"deficit={deficit}", *REMOVAL)
    branched = run_sweep(tmp_path, "branched", *grid)
    alone = run_sweep(tmp_path, "alone", *grid, "branching=false")
    taken = assert_same_records(branched, alone)
    # In Hydra's order each job takes the previous one's deficit epochs.
    assert [taken[deficit, 0, n] for n in (0, 1, 2, 3)] == [None, None, 1, 2]
    assert BranchStore(branched).points() == {}  # every point deleted once no pending job needed it
    assert not list((branched / STORE_DIR).glob("*.tmp")) and not (alone / STORE_DIR).exists()


@pytest.mark.slow
def test_a_branch_keeps_its_own_lr_restart_not_the_trunks(tmp_path):
    # blur@1 restarts its schedule at epoch 2, blur@2 at epoch 3; they share the clean epoch 0, after
    # which both lrs are 0.97. A branch that loaded the trunk's schedule would restart at 2.
    grid = ("deficit.onset=1,2", "deficit.length=1", "schedule.lr_restart=true")
    branched = run_sweep(tmp_path, "branched", *grid)
    alone = run_sweep(tmp_path, "alone", *grid, "branching=false")
    assert assert_same_records(branched, alone) == {("blur", 1, 1): None, ("blur", 2, 1): 1}


@pytest.mark.slow
def test_a_branched_window_sweep_with_the_representation_probes_records_exactly_what_lone_jobs_record(tmp_path):
    grid = ("deficit=blur,none", "deficit.onset=0,1,2", "deficit.length=2", "schedule.epochs_after_deficit=1",
            "probes=representation", "probes.probe_size=64", "probes.stiffness.matrix_every_n_epochs=1")
    branched = run_sweep(tmp_path, "branched", *grid)
    alone = run_sweep(tmp_path, "alone", *grid, "branching=false")
    taken = assert_same_records(branched, alone)
    # blur@1 takes nothing (blur@0 differs from epoch 0); blur@2 takes blur@1's clean epoch; none@0
    # takes blur@2's two clean epochs; none@1 all 3 of none@0's; none@2 all 4 of none@1's.
    assert [taken[d, o, 2] for d in ("blur", "none") for o in (0, 1, 2)] == [
        None, None, 1, 2, 3, 4]
    for name, run_dir in jobs(branched).items():
        other = alone / name
        assert (run_dir / STIFFNESS_FILE).read_text() == (other / STIFFNESS_FILE).read_text(), name
        saved = sorted(p.name for p in (run_dir / REPRESENTATIONS_DIR).glob("*.npz"))
        assert saved == sorted(p.name for p in (other / REPRESENTATIONS_DIR).glob("*.npz")) and saved, name
        for file in saved:
            with np.load(run_dir / REPRESENTATIONS_DIR / file) as x, np.load(other / REPRESENTATIONS_DIR / file) as y:
                assert x.files == y.files and all(np.array_equal(x[k], y[k]) for k in x.files), (name, file)


@pytest.mark.slow
def test_parallel_jobs_under_the_local_launcher_branch_or_train_alone_and_still_record_the_same(tmp_path):
    # Every job starts at once: a trunk may not be there yet (the job then trains it itself), or be
    # written while another job looks (atomic renames, a lock around copies and deletions).
    branched = run_sweep(tmp_path, "local", *REMOVAL, "hydra/launcher=local")
    alone = run_sweep(tmp_path, "alone", *REMOVAL, "branching=false")
    assert_same_records(branched, alone)
    assert BranchStore(branched).points() == {}


@pytest.mark.slow
def test_a_sweep_stopped_mid_job_resumes_and_branches_to_the_same_records(tmp_path):
    from test_reliability import run_with_fault

    sweep_dir = tmp_path / "stopped"
    args = ["-m", *TINY, "trainer=cpu", "checkpoint.min_seconds=0", *REMOVAL, f"hydra.sweep.dir={sweep_dir}"]
    # SIGTERM at the start of epoch 2 of the first job that has one (deficit.length=1, 3 epochs).
    stopped = run_with_fault("sigterm:2", *args, cwd=tmp_path)
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    assert read_summary(sweep_dir / next(p for p in jobs(sweep_dir) if "length=1" in p))["status"] == "interrupted"
    again = run_cli(*args, cwd=tmp_path, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    alone = run_sweep(tmp_path, "alone", *REMOVAL, "branching=false")
    taken = assert_same_records(sweep_dir, alone)
    assert [taken["blur", 0, n] for n in (0, 1, 2, 3)] == [None, None, 1, 2]
    resumed = read_summary(sweep_dir / next(p for p in jobs(sweep_dir) if "length=1" in p))
    assert resumed["resumed_from_epoch"] == 1  # its own checkpoint after epoch 2 of 3 (index 1)
