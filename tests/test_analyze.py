"""The sweep analysis: a small real sweep made with train() (plus a failed and a running job), the
break-even peaks on hand-written rows with a known answer, the CLI's errors and its W&B run."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from critical_periods import analyze as cli
from critical_periods.analysis import break_even as be
from critical_periods.analysis import figures
from critical_periods.analysis.runs import load_sweep
from critical_periods.analysis.tables import removal_table, sensitivity_table
from critical_periods.record.metrics import read_metrics
from critical_periods.record.summary import read_summary
from critical_periods.train import train

from conftest import CONF_DIR, TINY

# Job dir -> overrides. Blur removed at epochs 0, 1, 2 (onset 0), and a 1-epoch window at onsets 0
# and 1: enough for the removal, sensitivity and Fisher figures. One is nested, as sweeps of
# sweeps are.
FISHER_JOBS = {
    "deficit.length=0": ["probes=fisher", "deficit.length=0"],
    "deficit.length=1": ["probes=fisher", "deficit.length=1"],
    "deficit.length=2": ["probes=fisher", "deficit.length=2"],
    "window/deficit.onset=1": ["probes=fisher", "deficit.onset=1", "deficit.length=1"],
}
FAILED, RUNNING, STARTED = "crashed", "still_running", "resuming"
HUGE = 1e6  # the failed and running jobs' Fisher traces are scaled by this: a figure showing them would show it


def compose_cfg(out_dir: Path, overrides: list[str]):
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        return compose("train", overrides=[*TINY, f"paths.output_dir='{out_dir}'", *overrides])


def write_job(job_dir: Path, overrides: list[str]) -> None:
    (job_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    (job_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))


def run_job(sweep: Path, job: str, overrides: list[str]) -> Path:
    """A real tiny training run in ``sweep/job``, with the overrides file Hydra would have written."""
    job_dir = sweep / job
    write_job(job_dir, overrides)
    summary = train(compose_cfg(job_dir, overrides))
    assert summary.status == "completed"
    return job_dir


def write_metrics(job_dir: Path, rows: list[dict]) -> None:
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def scaled_fisher(rows: list[dict]) -> list[dict]:
    return [{**r, "fisher/trace": r["fisher/trace"] * HUGE} if r.get("fisher/trace") is not None else r for r in rows]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    root = tmp_path_factory.mktemp("sweep")
    for job, overrides in FISHER_JOBS.items():
        run_job(root, job, overrides)
    base = root / "deficit.length=0"
    partial = [r for r in read_metrics(base) if r.get("epoch") == 0 and not any(k.startswith(("final/", "test/")) for k in r)]

    # A job that crashed: its summary says failed, and it keeps what it logged before the crash.
    failed = root / FAILED
    write_job(failed, ["probes=fisher", "deficit.length=3"])
    summary = {k: v for k, v in read_summary(base).items() if not k.startswith("final/")}
    summary.update(status="failed", error="RuntimeError: simulated crash\nTraceback ...", length=3, epochs_trained=0)
    (failed / "summary.json").write_text(json.dumps(summary))
    write_metrics(failed, scaled_fisher(partial))

    # A job still running: metrics and Hydra's files, no summary yet.
    running = root / RUNNING
    write_job(running, ["probes=fisher", "deficit.length=4"])
    OmegaConf.save(compose_cfg(running, ["probes=fisher", "deficit.length=4"]), running / ".hydra" / "config.yaml")
    write_metrics(running, scaled_fisher(partial))

    # A job whose summary says running: train() writes one at start, so a killed job keeps it.
    started = root / STARTED
    write_job(started, ["probes=fisher", "deficit.length=5"])
    (started / "summary.json").write_text(json.dumps({**summary, "status": "running", "length": 5, "error": None}))
    write_metrics(started, scaled_fisher(partial))
    return root


@pytest.fixture
def drawn(monkeypatch) -> dict:
    """The matplotlib Figure behind every PNG the analysis saves, by file name."""
    captured = {}
    save = figures._save

    def capture(fig, path, **options):
        captured[path.name] = fig
        return save(fig, path, **options)

    monkeypatch.setattr(figures, "_save", capture)
    return captured


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def number(text: str) -> float | None:
    return None if text == "" else float(text)


# -- the real sweep ----------------------------------------------------------------------------------


def test_runs_csv_numbers_equal_the_summaries(sweep, tmp_path):
    cli.analyze(sweep, tmp_path)
    rows = {r["job"]: r for r in read_csv(tmp_path / "runs.csv")}
    assert set(rows) == {*FISHER_JOBS, FAILED, RUNNING, STARTED}
    for job in FISHER_JOBS:
        row, summary = rows[job], read_summary(sweep / job)
        assert row["status"] == "completed"
        for column, key in [("test_error", "final/test_error"), ("test_acc", "final/test_acc"),
                            ("test_loss", "final/test_loss"), ("fit_seconds", "fit_seconds")]:
            assert number(row[column]) == summary[key], column  # exactly, not approximately
        assert (int(row["onset"]), int(row["length"]), int(row["removal_epoch"]), int(row["epochs"]), int(row["seed"])) == (
            summary["onset"], summary["length"], summary["onset"] + summary["length"], summary["epochs"], summary["seed"])
        assert (number(row["lr"]), int(row["batch_size"]), number(row["weight_decay"])) == (
            summary["config"]["optim"]["lr"], summary["config"]["data"]["batch_size"], summary["config"]["optim"]["weight_decay"])
        assert (row["deficit"], row["model"], row["overrides"]) == ("blur", "MLP", ",".join(FISHER_JOBS[job]))
        # The Fisher peak, found independently: probes run at step 0 (0 epochs) and at epoch ends (epoch + 1).
        probes = [r for r in read_metrics(sweep / job) if r.get("fisher/trace") is not None]
        top = max(probes, key=lambda r: r["fisher/trace"])
        assert number(row["fisher_peak"]) == top["fisher/trace"]
        assert number(row["fisher_peak_epoch"]) == (0 if top["step"] == 0 else top["epoch"] + 1)
    assert rows[FAILED]["status"] == "failed" and rows[FAILED]["error"] == "RuntimeError: simulated crash"
    assert rows[FAILED]["test_error"] == ""
    assert rows[RUNNING]["status"] == rows[STARTED]["status"] == "running"
    assert (rows[RUNNING]["deficit"], rows[RUNNING]["length"], rows[RUNNING]["model"]) == ("blur", "4", "MLP")  # from .hydra/config.yaml


def test_figures_show_the_completed_runs_only(sweep, tmp_path, drawn, capsys):
    assert cli.main([str(sweep), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    expected = {"error_vs_removal.png", "sensitivity_vs_onset.png", "fisher_trace.png", "fisher_share.png"}
    assert set(drawn) == expected
    for name in expected:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert drawn[name].axes[0].get_title() and drawn[name].axes[0].get_xlabel() and drawn[name].axes[0].get_ylabel()
    assert not (tmp_path / "break_even.png").exists() and not (tmp_path / "break_even.csv").exists()
    assert "skipped break_even.png: no completed run logged break-even metrics" in out

    errors = {job: read_summary(sweep / job)["final/test_error"] for job in FISHER_JOBS}
    baseline = 100 * errors["deficit.length=0"]
    lines = {line.get_label().split(" (")[0]: line for line in drawn["error_vs_removal.png"].axes[0].get_lines()}
    assert list(lines["blur"].get_xdata()) == [0, 1, 2]
    assert list(lines["blur"].get_ydata()) == pytest.approx([100 * errors[f"deficit.length={n}"] for n in (0, 1, 2)])
    assert list(lines["no deficit"].get_ydata()) == pytest.approx([baseline, baseline])

    sensitivity = drawn["sensitivity_vs_onset.png"].axes[0].get_lines()[0]
    assert list(sensitivity.get_xdata()) == [0, 1]
    assert list(sensitivity.get_ydata()) == pytest.approx(
        [100 * errors["deficit.length=1"] - baseline, 100 * errors["window/deficit.onset=1"] - baseline])

    trace, beside = drawn["fisher_trace.png"].axes[:2]
    assert {line.get_label() for line in trace.get_lines()} == {  # settings in words from the configs, not overrides
        "no deficit (1 run)", "blur until epoch 1 (1 run)", "blur until epoch 2 (1 run)", "blur in epochs 1-2 (1 run)"}
    assert "Sensitivity" in beside.get_title()
    # Neither the failed nor the running job (Fisher traces scaled by HUGE) reaches any figure.
    for fig in drawn.values():
        for ax in fig.axes:
            for line in ax.get_lines():
                assert max(abs(float(y)) for y in line.get_ydata()) < HUGE / 100
    assert "runs without deficit" in drawn["fisher_share.png"].get_suptitle()

    assert "7 runs: 4 completed, 1 failed (crashed: RuntimeError: simulated crash), 2 running (resuming; still_running)" in out
    assert "skipped from figures: crashed (failed), resuming (running), still_running (running)" in out
    assert "blur" in out and "removal epoch" in out  # the headline table


def test_analysis_dir_inside_the_sweep_is_not_a_job_and_wandb_offline_makes_a_run(sweep, monkeypatch, capsys):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    out_dir = sweep / "analysis"
    assert cli.main([str(sweep), "--wandb"]) == 0
    assert "W&B summary run:" in capsys.readouterr().out
    runs = list((out_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    media = runs[0] / "files" / "media"
    assert len(list((media / "images" / "figures").glob("*.png"))) == 4
    assert [p.name.split("_")[0] for p in (media / "table").glob("*.table.json")] == ["runs"]
    # Analysing again: neither analysis/ nor its wandb/ is taken for a job.
    assert len(load_sweep(sweep, skip=[out_dir])) == len(load_sweep(sweep)) == 7


# -- break-even --------------------------------------------------------------------------------------


def write_hand_run(job_dir: Path, lr: float, seed: int, train_acc: list[float], probes: list[tuple[int, int, dict]]) -> None:
    """A completed run's record written by hand: 10 steps per epoch, ``train/acc`` per epoch, and
    probe rows ``(step, epoch, metrics)``, as the probe callback logs them."""
    rows = [{"step": step, "epoch": epoch, **metrics} for step, epoch, metrics in probes]
    rows += [{"step": 10 * (e + 1) - 1, "epoch": e, "train/acc": acc, "train/loss": 1.0 - acc} for e, acc in enumerate(train_acc)]
    write_metrics(job_dir, sorted(rows, key=lambda r: r["step"]))
    summary = {"status": "completed", "deficit": "none", "onset": 0, "length": 0, "epochs": len(train_acc), "seed": seed,
               "name": "lr_sweep", "final/test_error": 0.5, "final/test_acc": 0.5, "final/test_loss": 1.0,
               "config": {"optim": {"lr": lr}, "data": {"batch_size": 128}, "seed": seed}}
    (job_dir / "summary.json").write_text(json.dumps(summary))


def probe(k1, h1, tk, ck):
    return {"break_even/lambda_k1": k1, "curvature/lambda_h1": h1, "break_even/trace_k": tk, "break_even/cond_k": ck}


def test_break_even_peaks_are_taken_before_the_common_train_accuracy(tmp_path, capsys):
    # Hand-written rows (a real tiny run has no answer known in advance). The best train accuracies
    # are 0.9, 0.95 and 0.75, so the common accuracy is 0.75: the fast runs reach it in epochs 1 and 0,
    # the slow one in epoch 2. A probe logged in epoch e is inside the comparison iff e <= cut-off.
    sweep = tmp_path / "sweep"
    write_hand_run(sweep / "fast0", lr=0.2, seed=0, train_acc=[0.5, 0.8, 0.9], probes=[
        (0, 0, probe(1.0, 1.0, 1.0, 0.1)),
        (10, 0, probe(3.0, 2.0, 5.0, 0.2)),
        (20, 1, probe(2.0, None, 4.0, 0.4)),     # end of epoch 1: the cut-off; a null is skipped
        (25, 2, probe(7.0, 7.0, 7.0, 0.9)),      # an early-step probe after the cut-off
        (30, 2, probe(9.0, 9.0, 9.0, 0.8)),
    ])
    write_hand_run(sweep / "fast1", lr=0.2, seed=1, train_acc=[0.76, 0.9, 0.95], probes=[
        (0, 0, probe(1.0, 1.0, 1.0, 0.1)),
        (10, 0, probe(5.0, 4.0, 3.0, 0.3)),
        (20, 1, probe(8.0, 8.0, 8.0, 0.9)),
    ])
    write_hand_run(sweep / "slow", lr=0.05, seed=0, train_acc=[0.3, 0.6, 0.75], probes=[
        (0, 0, probe(1.0, 1.0, 1.0, 0.1)),
        (10, 0, probe(4.0, 3.0, 2.0, 0.05)),
        (20, 1, probe(5.0, 6.0, 3.0, 0.04)),
        (30, 2, probe(6.0, 5.0, 4.0, 0.03)),
    ])
    cli.main([str(sweep), "--train-acc-threshold", "common"])

    per_run = {r["job"]: r for r in read_csv(sweep / "analysis" / "break_even_runs.csv")}
    assert {job: (number(r["train_acc_threshold"]), int(r["cutoff_epoch"])) for job, r in per_run.items()} == {
        "fast0": (0.75, 1), "fast1": (0.75, 0), "slow": (0.75, 2)}
    peaks = lambda r, suffix: [number(r[f"{m}_peak{suffix}"]) for m in ("lambda_k1", "lambda_h1", "trace_k", "cond_k")]
    assert peaks(per_run["fast0"], "") == [3.0, 2.0, 5.0, 0.4]
    assert peaks(per_run["fast0"], "_all") == [9.0, 9.0, 9.0, 0.9]
    assert peaks(per_run["fast1"], "") == [5.0, 4.0, 3.0, 0.3]
    assert peaks(per_run["slow"], "") == peaks(per_run["slow"], "_all") == [6.0, 6.0, 4.0, 0.1]

    per_setting = {number(r["lr"]): r for r in read_csv(sweep / "analysis" / "break_even.csv")}
    assert set(per_setting) == {0.05, 0.2}
    fast = per_setting[0.2]
    assert (fast["n_runs"], fast["seeds"], fast["cutoff_epochs"], number(fast["train_acc_threshold"])) == ("2", "0;1", "0:1;1:0", 0.75)
    assert peaks(fast, "") == pytest.approx([4.0, 3.0, 4.0, 0.35])        # means over the two seeds
    assert peaks(fast, "_all") == pytest.approx([8.5, 8.5, 8.5, 0.9])
    assert (sweep / "analysis" / "break_even.png").stat().st_size > 0
    assert "Break-even peaks up to training accuracy 75.00%" in capsys.readouterr().out


def test_break_even_with_a_threshold_fixed_in_advance_and_the_pass_check(tmp_path):
    # lr 0.2 (2/lr = 10): lambda_H^1 passes 5 in epoch 1, training accuracy passes 60% in epoch 2.
    # lr 0.02 (2/lr = 100): lambda_H^1 never reaches 50, though training accuracy passes 60% in epoch 1.
    sweep = tmp_path / "sweep"
    write_hand_run(sweep / "fast", lr=0.2, seed=0, train_acc=[0.3, 0.55, 0.61, 0.9], probes=[
        (0, 0, probe(1.0, 1.0, 1.0, 0.1)), (10, 0, probe(2.0, 4.9, 1.0, 0.1)), (20, 1, probe(3.0, 6.0, 2.0, 0.2)),
        (30, 2, probe(4.0, 9.0, 3.0, 0.3)), (40, 3, probe(8.0, 12.0, 9.0, 0.1))])
    write_hand_run(sweep / "slow", lr=0.02, seed=0, train_acc=[0.5, 0.7], probes=[
        (0, 0, probe(1.0, 1.0, 1.0, 0.1)), (10, 0, probe(1.0, 30.0, 1.0, 0.1)), (20, 1, probe(1.0, 49.9, 1.0, 0.1))])
    runs = {r.job: r for r in load_sweep(sweep)}
    assert be.cutoff_epoch(runs["fast"].metrics, 0.6) == 2 and be.cutoff_epoch(runs["slow"].metrics, 0.6) == 1
    assert be.cutoff_epoch(runs["slow"].metrics, 0.95) is None
    results = {r.run.job: r for r in be.compare(list(runs.values()), threshold=0.6)}
    fast, slow = results["fast"], results["slow"]
    assert (fast.threshold, fast.cutoff_epoch, fast.break_even_epoch, fast.two_over_lr) == (0.6, 2, 1, 10.0)
    assert fast.passed_break_even and fast.comparable
    assert fast.peaks["lambda_h1"] == 9.0 and fast.peaks_all["lambda_h1"] == 12.0
    assert not slow.passed_break_even and not slow.comparable and slow.peaks_all["lambda_h1"] == 49.9
    # Without a fixed threshold the common accuracy (0.7, the slow run's best) is used, as before.
    assert {r.threshold for r in be.compare(list(runs.values()))} == {0.7}


def test_break_even_from_real_runs(tmp_path, drawn):
    sweep = tmp_path / "sweep"
    for lr in (0.05, 0.2):
        run_job(sweep, f"optim.lr={lr}", ["probes=full", "probes.probe_size=64", "probes.covariance.batches=4",
                                          "probes.early_steps=3", "probes.early_until_step=10", f"optim.lr={lr}"])
    cli.analyze(sweep, threshold=None)  # the common accuracy: these short runs never reach 60%
    rows = {number(r["lr"]): r for r in read_csv(sweep / "analysis" / "break_even_runs.csv")}
    metrics = {lr: read_metrics(sweep / f"optim.lr={lr}") for lr in (0.05, 0.2)}
    threshold = min(max(r["train/acc"] for r in m if "train/acc" in r) for m in metrics.values())
    for lr, row in rows.items():
        assert number(row["train_acc_threshold"]) == threshold
        cutoff = min(r["epoch"] for r in metrics[lr] if r.get("train/acc", -1) >= threshold)
        assert int(row["cutoff_epoch"]) == cutoff
        values = [r["break_even/lambda_k1"] for r in metrics[lr] if "break_even/lambda_k1" in r and r["epoch"] <= cutoff]
        assert number(row["lambda_k1_peak"]) == max(values)
    # The figure's labels, threshold lines and 2/lr lines are tested in test_figures.py.
    panels = {ax.get_title() for ax in drawn["break_even.png"].axes}
    assert {"top Hessian eigenvalue $\\lambda_H^1$", "gradient covariance trace tr K"} <= panels


# -- aggregation over seeds, on hand-written summaries ------------------------------------------------------


def write_summary(job_dir: Path, deficit: str, onset: int, length: int, seed: int, error: float) -> None:
    job_dir.mkdir(parents=True)
    (job_dir / "summary.json").write_text(json.dumps({
        "status": "completed", "deficit": deficit, "onset": onset, "length": length, "seed": seed,
        "final/test_error": error, "config": {"optim": {"lr": 0.1}, "seed": seed},
    }))


def test_removal_and_sensitivity_average_over_seeds(tmp_path):
    for seed, (base, short, long_, late) in enumerate([(0.10, 0.12, 0.20, 0.11), (0.12, 0.16, 0.30, 0.15)]):
        write_summary(tmp_path / f"none{seed}", "none", 0, 0, seed, base)
        write_summary(tmp_path / f"short{seed}", "blur", 0, 2, seed, short)
        write_summary(tmp_path / f"long{seed}", "blur", 0, 8, seed, long_)
        write_summary(tmp_path / f"late{seed}", "blur", 6, 2, seed, late)
    runs = load_sweep(tmp_path)
    removal = {c.x: c.error for c in removal_table(runs)}
    assert set(removal) == {2, 8}
    assert (removal[8].mean, removal[8].low, removal[8].high, removal[8].n) == pytest.approx((0.25, 0.20, 0.30, 2))
    sensitivity = {c.x: c.sensitivity for c in sensitivity_table(runs)}  # baseline mean 0.11
    assert (sensitivity[0].mean, sensitivity[0].low, sensitivity[0].high) == pytest.approx((0.03, 0.01, 0.05))
    assert (sensitivity[6].mean, sensitivity[6].low, sensitivity[6].high) == pytest.approx((0.02, 0.0, 0.04))


def test_sensitivity_is_paired_with_the_matched_clean_run_of_the_same_seed_and_window(tmp_path):
    """Achille Fig. 4 as the reproduction judges it: each window run minus the no-deficit run of the
    same seed, onset and length (same epochs), not minus the pooled clean mean."""
    for seed, offset in enumerate((0.0, 0.10)):  # seed 1 is 10 points worse everywhere: pairing removes it
        for onset, harm in ((0, 0.05), (4, 0.01)):
            write_summary(tmp_path / f"blur{onset}-{seed}", "blur", onset, 2, seed, 0.20 + offset + harm)
            write_summary(tmp_path / f"none{onset}-{seed}", "none", onset, 2, seed, 0.20 + offset)
    cells = {c.x: c.sensitivity for c in sensitivity_table(load_sweep(tmp_path))}
    assert (cells[0].mean, cells[0].low, cells[0].high) == pytest.approx((0.05, 0.05, 0.05))
    assert (cells[4].mean, cells[4].low, cells[4].high) == pytest.approx((0.01, 0.01, 0.01))


# -- errors --------------------------------------------------------------------------------------------


def test_an_empty_or_missing_sweep_dir_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty" / "analysis").mkdir(parents=True)
    write_metrics(tmp_path / "empty" / "analysis" / "old", [{"step": 0}])  # an analysis folder holds no job
    for path in (tmp_path / "empty", tmp_path / "missing"):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([str(path)])
        assert exit_info.value.code not in (0, None)
        assert str(path) in capsys.readouterr().err


def test_the_module_runs_as_a_command(tmp_path):
    result = subprocess.run([sys.executable, "-m", "critical_periods.analyze", str(tmp_path / "nowhere")],
                            capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 1
    assert f"analyze: error: sweep directory {tmp_path / 'nowhere'} does not exist" in result.stderr


def test_break_even_threshold_is_the_papers_60_percent_unless_asked_otherwise(tmp_path):
    assert cli.parse_args([str(tmp_path)]).train_acc_threshold == 0.6
    assert cli.parse_args([str(tmp_path), "--train-acc-threshold", "common"]).train_acc_threshold is None
    with pytest.raises(SystemExit):
        cli.parse_args([str(tmp_path), "--train-acc-threshold", "1.5"])
