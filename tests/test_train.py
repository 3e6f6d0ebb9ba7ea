"""The training entry point: in-process runs for the record's contents, real subprocesses for the CLI."""

import json

import pytest

from critical_periods.module import ClassifierModule
from critical_periods.record.metrics import read_metrics
from critical_periods.record.summary import read_summary
from critical_periods.train import train

from conftest import TINY, run_cli


def test_run_writes_a_complete_record(make_cfg, tmp_path):
    summary = train(make_cfg("deficit=blur", "deficit.length=2", "schedule.epochs_after_deficit=1"))
    on_disk = read_summary(tmp_path)
    assert on_disk == json.loads(json.dumps(summary.to_json()))
    assert on_disk["status"] == "completed"
    assert (on_disk["deficit"], on_disk["onset"], on_disk["length"], on_disk["epochs"], on_disk["seed"]) == ("blur", 0, 2, 3, 0)
    assert on_disk["final/test_error"] == pytest.approx(1 - on_disk["final/test_acc"])
    assert on_disk["config"]["model"]["widths"] == [32]
    rows = read_metrics(tmp_path)
    last = {key: [r[key] for r in rows if r.get("epoch") == 2 and key in r][-1] for key in ("train/acc", "val/acc")}
    # final/* holds the last epoch's own train and val numbers too (testing resets Lightning's)
    assert (on_disk["final/train_acc"], on_disk["final/val_acc"]) == (last["train/acc"], last["val/acc"])
    active = {r["epoch"]: r["deficit/active"] for r in rows if "deficit/active" in r}
    assert active == {0: 1.0, 1: 1.0, 2: 0.0}
    deficit_view = sorted(r["epoch"] for r in rows if "val_deficit/acc" in r)
    assert deficit_view == [0, 1]  # logged only while the deficit is on
    assert sorted(r["epoch"] for r in rows if "val/acc" in r) == [0, 1, 2]
    assert any(r.get("final/test_acc") == on_disk["final/test_acc"] for r in rows)


def test_lr_decays_per_epoch(make_cfg, tmp_path):
    train(make_cfg("optim.lr=0.1", "schedule.lr_gamma=0.5"))
    lrs = [r["lr"] for r in read_metrics(tmp_path) if "lr" in r]
    assert lrs == pytest.approx([0.1, 0.05])


def test_non_finite_loss_is_recorded_as_diverged(make_cfg, tmp_path):
    summary = train(make_cfg("optim.lr=1e12", "optim.momentum=0.0", "deficit.length=3", "schedule.epochs_after_deficit=5"))
    assert summary.status == "diverged"
    assert read_summary(tmp_path)["status"] == "diverged"
    assert summary.epochs_trained < 8
    assert summary.test_error is None and "final/test_error" not in read_summary(tmp_path)


def test_a_crash_mid_training_is_recorded_as_failed_and_reraised(make_cfg, tmp_path, monkeypatch):
    original = ClassifierModule.training_step

    def crash_in_second_epoch(self, batch, batch_idx):
        if self.current_epoch == 1:
            raise RuntimeError("simulated crash")
        return original(self, batch, batch_idx)

    monkeypatch.setattr(ClassifierModule, "training_step", crash_in_second_epoch)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(make_cfg())
    summary = read_summary(tmp_path)
    assert summary["status"] == "failed" and "simulated crash" in summary["error"]
    assert {r["epoch"] for r in read_metrics(tmp_path)} == {0}  # what was logged before the crash stays


def test_cli_run_from_another_directory_writes_a_valid_summary(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(*TINY, "logger=wandb", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_summary(run_dir)
    assert summary["status"] == "completed" and 0.0 <= summary["final/test_error"] <= 1.0
    assert read_metrics(run_dir)
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
    assert "GPU available" not in result.stdout + result.stderr  # Lightning's chatter is silenced


def test_multirun_writes_one_record_and_one_wandb_run_per_job(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = run_cli("-m", *TINY, "logger=wandb", "deficit.length=1,2", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p.parent for p in sweep_dir.glob("*/summary.json"))
    assert [read_summary(j)["length"] for j in jobs] == [1, 2]
    assert all(read_summary(j)["status"] == "completed" for j in jobs)
    runs = [list((j / "wandb").glob("offline-run-*")) for j in jobs]
    assert [len(r) for r in runs] == [1, 1]  # each job finished its own W&B run
    assert runs[0][0].name != runs[1][0].name


@pytest.mark.parametrize("overrides,message", [
    (["deficit=fog"], "deficit=fog is not allowed: it must be one of blur, label_permutation, noise, none, random_labels, shuffled_pixels"),
    pytest.param(["deficit.onset=-1"], "deficit.onset=-1 is not allowed", marks=pytest.mark.slow),
    pytest.param(["schedule.mode=fixed", "schedule.epochs=3", "deficit.length=5"], "ends at epoch 5", marks=pytest.mark.slow),
    pytest.param(["deficit=blur", "deficit.size=100"], "deficit.size=100 is not allowed", marks=pytest.mark.slow),
    (["data=cifar10", "paths.data_dir=nowhere"], "cifar-10-batches-py"),
])
def test_bad_input_fails_before_training_with_a_clear_message(tmp_path, overrides, message):
    run_dir = tmp_path / "run"
    other_data = any(o.startswith("data=") for o in overrides)
    tiny = [o for o in TINY if not (other_data and o.startswith("data."))]  # keys of mnist1d only
    result = run_cli(*tiny, *overrides, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-3000:]
    assert not (run_dir / "summary.json").exists() and not (run_dir / "metrics.jsonl").exists()


FULL_PROBE_KEYS = {
    "fisher/trace", "curvature/lambda_h1", "curvature/trace_h", "break_even/lambda_k1", "break_even/trace_k",
    "break_even/cond_k", "break_even/trace_k_ratio", "break_even/delta_loss_abs", "break_even/delta_loss",
    "grad/norm", "grad/mean", "grad/std", "probe/seconds", "stiffness/cos_same_class",
    "stiffness/cos_diff_class", "stiffness/sign_same_class", "stiffness/sign_diff_class",
}


def test_full_probes_reach_the_run_record_and_wandb_under_the_same_names(make_cfg, tmp_path):
    # batches=4: the tiny data set has 720 training examples, fewer than 25 mini-batches of 128
    train(make_cfg("probes=full", "probes.probe_size=64", "probes.covariance.batches=4", "probes.early_steps=3",
                   "probes.early_until_step=5", "logger=wandb"))
    keys = {key for row in read_metrics(tmp_path) for key in row}
    assert FULL_PROBE_KEYS <= keys
    assert (tmp_path / "stiffness.jsonl").stat().st_size > 0  # the class x class matrices, in the run folder
    layers = {k.rsplit("/", 1)[1] for k in keys if k.startswith("fisher/trace/")}
    assert layers and layers == {k.rsplit("/", 1)[1] for k in keys if k.startswith("fisher/share/")}
    # W&B's offline transaction log holds every key name as plain text.
    (wandb_log,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    logged = wandb_log.read_bytes()
    assert [key for key in keys - {"step", "epoch"} if key.encode() not in logged] == []


@pytest.mark.parametrize("env,expected", [({"SUBMITIT_EXECUTOR": "local"}, 1), ({"SLURM_CPUS_PER_TASK": "3"}, 3)])
def test_threads_follow_the_launcher(monkeypatch, env, expected):
    import torch

    from critical_periods.threads import set_threads

    before = torch.get_num_threads()
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    try:
        set_threads(None)
        assert torch.get_num_threads() == expected
        set_threads(2)  # an explicit `threads=` wins
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
