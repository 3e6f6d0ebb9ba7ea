"""The reproduction: each claim's per-seed paired effects and its control computed from run records
with known answers, judged by the shipped rules; the CKA comparison on a real run's saved
representations; the JSON record and the markdown rendered from it; and (slow) the whole command on
its cut-down grid."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from critical_periods.record import metric_names as names
from critical_periods.analysis.runs import Run, load_sweep
from critical_periods.probes.representations import save_representations
from critical_periods.record.summary import Summary
from critical_periods.vocabulary import RunStatus
from critical_periods.reproduction import claims as c
from critical_periods.reproduction.report import render_markdown, write_record
from critical_periods.reproduction.rules import load_rules
from critical_periods.reproduction.studies import NOT_IN_FOLDER_NAMES, STUDIES
from critical_periods.vocabulary import Verdict

from conftest import CONF_DIR, TINY, run_cli

RULES = load_rules()
JUDGE = c.Judge(RULES)
R, N, I = Verdict.REPRODUCED, Verdict.NOT_REPRODUCED, Verdict.INCONCLUSIVE
SEEDS = range(5)
CONTROL_SEEDS = range(100, 105)


def run(deficit: str, length: int, error: float, seed: int = 0, onset: int = 0, metrics=(), train_acc: float = 1.0,
        lr: float = 0.05, batch_size: int = 128, path: Path = Path("."), config=None) -> Run:
    summary = {"status": "completed", "deficit": deficit, "onset": onset, "length": length, "seed": seed,
               "final/test_error": error}
    rows = [*metrics, {"step": 1000, "epoch": onset + length + 1, names.TRAIN_ACC: train_acc}]
    return Run(job=f"{deficit}-{onset}-{length}-{seed}-{lr}-{batch_size}", path=path, overrides=(), status="completed",
               summary=Summary.from_json(summary),
               config={"optim": {"lr": lr}, "data": {"batch_size": batch_size}, **(config or {})}, metrics=rows)


def noise(seed: int, scale: float = 0.004) -> float:
    """A fixed per-seed wobble (fraction of error), so intervals have a width."""
    return scale * np.sin(1.7 * seed + 0.3)


def removal_study(late_harm: dict[str, float], lengths=(20, 60), early_harm: float = 0.01, train_acc=None) -> list[Run]:
    """Clean runs of every length (seeds 0-4 and the controls 100-104) at 0.30 + wobble; each kind
    removed at the latest length that much worse (early_harm at the earliest)."""
    runs = []
    for length in lengths:
        for seed in (*SEEDS, *CONTROL_SEEDS):
            runs.append(run("none", length, 0.30 + noise(seed), seed=seed))
        for kind, late in late_harm.items():
            for seed in SEEDS:
                harm = late if length == max(lengths) else early_harm
                acc = (train_acc or {}).get(kind, 1.0)
                runs.append(run(kind, length, 0.30 + noise(seed) + harm + noise(seed + 11, 0.002), seed=seed, train_acc=acc))
    return runs


def by_rule(claims):
    return {claim.rule.id: claim for claim in claims}


def test_removal_claims_judge_paired_effects_beside_their_controls():
    runs = removal_study({"blur": 0.12, "vertical_flip": 0.002, "label_permutation": 0.003, "noise": 0.03})
    claims = by_rule(c.removal_claims(JUDGE, runs, "mlp", "decaying", "kinds_mlp_error_vs_removal.png"))
    blur = claims["achille-blur-lasting"]
    assert blur.status == R and blur.control.status in (N, I)
    lasting = blur.judgement.parts[0]
    assert lasting.effect == pytest.approx(12 + 100 * np.mean([noise(s + 11, 0.002) for s in SEEDS]), abs=1e-9)
    assert lasting.ci95[0] <= lasting.effect <= lasting.ci95[1] and lasting.n == 5
    assert claims["achille-flip-no-critical-period"].status == R
    # the flip rule's control is blur in its place: a critical period the rule must not call absent
    assert claims["achille-flip-no-critical-period"].control.status == N
    assert claims["achille-permutation-no-critical-period"].status == R
    assert claims["achille-noise-milder-than-blur"].status == R  # noise +3 pp vs blur +12 pp
    # the fresh-seed control of a rule that claims an effect sits at 0
    assert abs(blur.control.parts[0].effect) < 1.0


def test_harm_within_seed_noise_is_not_a_reproduction_and_a_flip_with_harm_fails():
    runs = removal_study({"blur": 0.004, "vertical_flip": 0.10, "label_permutation": 0.0, "noise": 0.2})
    claims = by_rule(c.removal_claims(JUDGE, runs, "conv1d", "decaying", None))
    assert claims["achille-blur-lasting"].status == N  # +0.4 pp: the interval excludes the 2 pp the rule asks
    assert claims["achille-flip-no-critical-period"].status == N  # +10 pp: outside the +-2 pp margin
    assert claims["achille-noise-milder-than-blur"].status == N  # noise far worse than blur


def test_a_deficit_whose_runs_never_learned_the_real_task_is_inconclusive():
    runs = removal_study({"blur": 0.12, "label_permutation": 0.0, "noise": 0.02}, train_acc={"noise": 0.6})
    claims = by_rule(c.removal_claims(JUDGE, runs, "mlp", "constant", None))
    noise_claim = claims["achille-noise-milder-than-blur"]
    assert noise_claim.status == I and "60.0% training accuracy" in noise_claim.judgement.parts[0].reason
    assert "achille-flip-no-critical-period" not in claims  # the rule names the decaying schedule only


def test_fewer_than_five_seeds_is_inconclusive_whatever_the_effect():
    runs = [r for r in removal_study({"blur": 0.2}) if r.seed not in (3, 4)]
    blur = by_rule(c.removal_claims(JUDGE, runs, "mlp", "decaying", None))["achille-blur-lasting"]
    assert blur.status == I and blur.judgement.seeds == 3


def window_study(harm_by_onset: dict[int, float]) -> list[Run]:
    runs = []
    for onset, harm in harm_by_onset.items():
        for seed in (*SEEDS, *CONTROL_SEEDS):
            runs.append(run("none", 40, 0.30 + noise(seed), seed=seed, onset=onset))
        for seed in SEEDS:
            runs.append(run("blur", 40, 0.30 + noise(seed) + harm + noise(seed + 5, 0.002), seed=seed, onset=onset))
    return runs


def test_sensitivity_is_judged_on_paired_early_harm_and_its_fall():
    onsets = {0: 0.08, 10: 0.06, 20: 0.04, 30: 0.02, 40: 0.01, 50: 0.0, 60: 0.0, 80: 0.0}
    claim = c.sensitivity_claim(JUDGE, window_study(onsets), "mlp", "constant", None)
    assert claim.status == R and claim.control.status in (N, I)
    assert [row[0] for row in claim.table] == [str(o) for o in onsets]
    assert claim.status == R
    flat = c.sensitivity_claim(JUDGE, window_study({o: 0.05 for o in onsets}), "mlp", "decaying", None)
    assert flat.status == Verdict.PARTLY and flat.judgement.holds() == ["early windows do harm"]


def test_depth_compares_paired_harm_of_the_deepest_and_shallowest_net():
    runs = []
    for widths, harm_pp in (([512], 0.03), ([512, 512, 512, 512], 0.09)):
        config = {"model": {"widths": widths}}
        for seed in (*SEEDS, *CONTROL_SEEDS):
            runs.append(run("none", 40, 0.30 + noise(seed) + 0.01 * len(widths), seed=seed, config=config))
        for seed in SEEDS:
            runs.append(run("blur", 40, 0.30 + noise(seed) + 0.01 * len(widths) + harm_pp + noise(seed + 3, 0.002),
                            seed=seed, config=config))
    claim = c.depth_claim(JUDGE, runs, None)
    assert claim.status == R and claim.judgement.parts[0].effect == pytest.approx(6.0, abs=0.5)
    assert claim.control.status != R and [row[0] for row in claim.table] == ["1", "4"]


def test_stiffness_is_higher_at_the_larger_lr_against_same_lr_other_seeds():
    runs = []
    for lr, level in ((0.01, 0.02), (0.1, 0.08)):
        for seed in (*SEEDS, *CONTROL_SEEDS) if lr == 0.01 else SEEDS:
            series = [level + 0.003 * np.sin(seed + e) for e in range(11)]
            probe = probe_run(seed, {names.STIFFNESS_COS_DIFF: series})
            runs.append(Run(job=f"{lr}-{seed}", path=Path("."), overrides=(), status="completed", summary=probe.summary,
                            config={"optim": {"lr": lr}}, metrics=probe.metrics))
    claim = c.stiffness_lr_claim(JUDGE, runs, None)
    assert claim.status == R and claim.judgement.parts[0].effect == pytest.approx(0.06, abs=0.005)
    assert claim.control.status != R


def probe_run(seed: int, series: dict[str, list[float]], val: dict[str, list[float]] | None = None) -> Run:
    """Probes at the initial weights (step 0) then after epochs 0, 1, ...; validation rows per epoch."""
    length = len(next(iter(series.values())))
    rows = [{"step": e + 1 if e >= 0 else 0, "epoch": max(e, 0), **{k: v[e + 1] for k, v in series.items()}}
            for e in range(-1, length - 1)]
    for key, values in (val or {}).items():
        rows += [{"epoch": e, key: v} for e, v in enumerate(values)]
    return run("none", 0, 0.3, seed=seed, metrics=rows)


def test_fisher_rise_and_fall_against_a_time_shuffled_control():
    epochs = 40
    trace = [1.0] + [20 * np.exp(-((e - 5) / 4) ** 2) + 2 for e in range(epochs)]  # peak at epoch 5, then down
    acc = list(np.linspace(0.5, 0.9, epochs))
    runs = [probe_run(s, {names.FISHER_TRACE: [t * (1 + 0.01 * s) for t in trace]}, {names.VAL_ACC: acc}) for s in SEEDS]
    claim = c.fisher_claim(JUDGE, runs, "mlp", None)
    assert claim.status == R, claim.measured
    assert claim.control.status != R
    assert c.fisher_claim(JUDGE, runs[:2], "mlp", None).status == I


def test_stiffness_falls_after_the_validation_loss_minimum():
    epochs = 30
    loss = [1.0 - 0.05 * e if e <= 12 else 0.4 + 0.03 * (e - 12) for e in range(epochs)]  # minimum at epoch 12
    same = [0.5] + [0.5 if e <= 12 else 0.5 - 0.02 * (e - 12) for e in range(epochs)]
    runs = [probe_run(s, {names.STIFFNESS_COS_SAME: [v + 0.005 * s for v in same]}, {names.VAL_LOSS: loss}) for s in SEEDS]
    claim = c.stiffness_overfitting_claim(JUDGE, runs, "mlp", None)
    assert claim.status == R and claim.numbers["t_star"] == {s: 12 for s in SEEDS}
    assert claim.control.status != R
    never = [probe_run(s, {names.STIFFNESS_COS_SAME: same}, {names.VAL_LOSS: list(np.linspace(1, 0.1, epochs))}) for s in SEEDS]
    assert c.stiffness_overfitting_claim(JUDGE, never, "mlp", None).status == I


def test_frequency_half_times_against_low_vs_low_of_other_seeds():
    low = [1.0, 0.6, 0.4, 0.3, 0.2, 0.1, 0.1]
    high = [1.0, 0.9, 0.8, 0.7, 0.45, 0.3, 0.2]
    runs = [probe_run(s, {names.FREQUENCY_ERROR_LOW: low, names.FREQUENCY_ERROR_HIGH: high}) for s in (*SEEDS, *CONTROL_SEEDS)]
    claim = c.frequency_claim(JUDGE, runs, "mlp", None)
    assert claim.numbers["half_times"][0] == [1, 3]
    assert claim.status == R and claim.control.status != R


def break_even_run(lr, seed, h1, k1, cond, batch_size=128) -> Run:
    rows = [{"step": e + 1, "epoch": e, names.LAMBDA_H1: h, names.LAMBDA_K1: k, names.COND_K: q, names.TRAIN_ACC: 0.5 + 0.01 * e}
            for e, (h, k, q) in enumerate(zip(h1, k1, cond))]
    return Run(job=f"lr{lr}-b{batch_size}-s{seed}", path=Path("."), overrides=(), status="completed",
               summary=Summary(status=RunStatus.COMPLETED, seed=seed), config={"optim": {"lr": lr}, "data": {"batch_size": batch_size}},
               metrics=rows)


def test_break_even_slopes_follow_the_conjecture_and_their_shuffled_control_does_not():
    runs = []
    for seed in SEEDS:
        for lr in (0.05, 0.07, 0.1, 0.14, 0.2):
            top = 1.6 / lr * (1 + 0.01 * seed)  # lambda_H^1 levels off at 0.8 x 2/lr: the maxima fall as 1/lr
            runs.append(break_even_run(lr, seed, [top / 4, top / 2, top, top], [k / lr for k in (0.1, 0.2, 0.3, 0.3)],
                                       [0.01, 0.02, 0.1 * lr ** 0.5, 0.1 * lr ** 0.5]))
    runs.append(break_even_run(0.01, 0, [1, 2, 3, 4], [1, 1, 1, 1], [0.1] * 4))  # never passes break-even (2/lr = 200)
    claim, records = c.break_even_claim(JUDGE, runs, "lr", "break_even_lr", None)
    slope = claim.judgement.parts[0]
    assert slope.effect == pytest.approx(-1.0, abs=1e-6) and claim.status == R, claim.measured
    assert claim.control.status != R
    assert "lr 0.01 seed 0" in claim.measured
    assert {r["compared"] for r in records if r["lr"] == 0.01} == {False}


def test_cka_on_representations_written_by_the_probe_writer(tmp_path):
    """Known answers through the project's own writer and loader: a rotated, scaled copy of the clean
    layer has CKA 1 (the flip), an unrelated one a low CKA (blur). Observed, never counted."""
    rng = np.random.default_rng(0)
    runs = []
    for seed in SEEDS:
        clean = rng.normal(size=(64, 7))
        rotation, _ = np.linalg.qr(rng.normal(size=(7, 7)))
        layers = {"none": clean, "vertical_flip": clean @ rotation * 3.0, "blur": rng.normal(size=(64, 7))}
        for kind, first in layers.items():
            run_dir = tmp_path / f"{kind}-{seed}"
            for epoch in (40, 80):  # the earliest layer first, as the network defines them
                save_representations(run_dir, epoch, {"0": torch.tensor(first, dtype=torch.float32),
                                                      "2": torch.tensor(rng.normal(size=(64, 3)), dtype=torch.float32)},
                                     probe_inputs=torch.zeros(64, 40), dtype=torch.float32)
            runs.append(run(kind, 40 if kind != "none" else 0, 0.3, seed=seed, path=run_dir))
    claim = c.cka_claim(JUDGE, runs, None)
    assert claim.status == Verdict.OBSERVED and claim.control is None
    flip_minus_blur = claim.judgement.parts[0]
    assert flip_minus_blur.n == 5 and flip_minus_blur.effect > 0.5
    assert [row[1] for row in claim.table] == ["80"] * 5


def test_cka_reads_a_real_runs_saved_representations(tmp_path):
    """One real multirun (blur, flip, none; one seed) with the representation probe: the claim reads the
    records and files the training wrote, not a format of the test's making."""
    result = run_cli("-m", *TINY, "probes=representation", "probes.probe_size=64", "probes.representation.save_every_n_epochs=1",
                     "deficit=blur,vertical_flip,none", "deficit.length=1", "seed=0",
                     f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    runs = load_sweep(tmp_path / "sweep")
    assert len(runs) == 3 and all(r.completed for r in runs)
    [(seed, epoch, layer, blur, flip)] = c.cka_values(runs)
    assert seed == 0 and epoch == 2 and 0.0 < blur <= 1.0 and 0.0 < flip <= 1.0
    claim = c.cka_claim(JUDGE, runs, None)
    assert claim.status == Verdict.OBSERVED and claim.judgement.parts[0].n == 1


def test_record_json_and_markdown_carry_the_same_claims(tmp_path):
    claims = c.removal_claims(JUDGE, removal_study({"blur": 0.12, "vertical_flip": 0.0, "label_permutation": 0.0,
                                                    "noise": 0.03}), "mlp", "decaying", "x.png")
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "x.png").write_bytes(b"png")
    record = c.jsonable({
        "run": {"command": "x", "quick": False, "machine": "m", "jobs": 2, "wall_minutes": 1.0, "runs": 10, "fit_minutes": 2.0},
        "rules": {"commit": "abc123", "modified": False, "method_text": "method"},
        "claims": [claim.to_json("abc123", "docs/figures/x.png") for claim in claims], "break_even_runs": [],
        "not_run": [], "retired": [],
        "protocol": {"kinds_mlp": {"seeds": [0, 1], "window_length": None}}, "skipped": {}, "figures": {},
    })
    json_path, md_path = write_record(tmp_path, record)
    stored = json.loads(json_path.read_text())
    ids = [x["id"] for x in stored["claims"]]
    assert len(ids) == len(set(ids)) == len(claims)
    for entry in stored["claims"]:
        assert entry["status"] in Verdict.values() and entry["verdict"] == entry["status"]
        assert entry["seeds"] >= 5 and entry["rules_commit"] == "abc123" and entry["figure"] == "docs/figures/x.png"
        lo, hi = entry["ci95"]
        assert lo <= entry["effect"] <= hi
        assert set(entry["control"]) >= {"name", "status"} and entry["control"]["status"] != "reproduced"
    markdown = md_path.read_text()
    assert markdown == render_markdown(stored)
    assert all(f"## {x['id']}" in markdown for x in stored["claims"])
    assert "**amended after results**" in markdown  # the permutation rule's true history
    assert "3600 for training and 400 for validation" in markdown


def first_of_each_sweep(overrides):
    """One job of a multirun: the first value of every comma-swept override."""
    def first(value: str) -> str:
        return value[:value.index("]") + 1] if value.startswith("[") else value.split(",")[0]

    return [o.split("=", 1)[0] + "=" + first(o.split("=", 1)[1]) for o in overrides]


# (A study with its own runner, e.g. early_linear, has runner arguments, not train.py overrides.)
@pytest.mark.parametrize("study", [s for s in STUDIES if not s.missing() and not hasattr(s, "run")], ids=lambda s: s.name)
def test_every_study_command_composes_and_names_its_job_folders_within_the_limit(study):
    from hydra import compose, initialize_config_dir

    for overrides in (*study.full, *study.quick):
        job = [*first_of_each_sweep(overrides), "logger=none", "threads=1"]
        with initialize_config_dir(CONF_DIR, version_base="1.3"):
            cfg = compose("train", overrides=job)
        assert cfg.seed == int(next(o for o in job if o.startswith("seed=")).split("=")[1])
        # The longest folder name Hydra can make from this command (every swept value at its longest).
        longest = [o.split("=", 1)[0] + "=" + max(o.split("=", 1)[1].split(","), key=len) for o in overrides]
        folder = ",".join(sorted(o for o in [*longest, "threads=1"] if o.split("=")[0] not in NOT_IN_FOLDER_NAMES))
        assert len(folder) < 255, folder


@pytest.mark.slow
def test_quick_reproduction_writes_the_record_the_report_and_its_figures(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "critical_periods.reproduce", "--quick", "--out", str(tmp_path / "runs"),
         "--docs", str(tmp_path / "docs")], capture_output=True, text=True, timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "docs" / "reproduction.json").read_text())
    assert set(record) >= {"claims", "break_even_runs", "protocol"}
    assert record["claims"] and all(set(x) >= {"id", "claim", "model", "status", "verdict", "seeds", "effect", "ci95",
                                                "rules_commit", "figure", "rule", "numbers"} for x in record["claims"])
    assert all(x["status"] in Verdict.values() for x in record["claims"])
    assert {x["model"] for x in record["claims"]} >= {"mlp", "conv1d"}
    assert record["break_even_runs"] and all(
        set(x) >= {"study", "lr", "batch_size", "seed", "max_lambda_h1", "two_over_lr", "passed_break_even"}
        for x in record["break_even_runs"])
    assert all("seeds" in p and "models" in p and "epochs" in p for p in record["protocol"].values())
    report = (tmp_path / "docs" / "reproduction.md").read_text()
    assert "## Status" in report and "Wall time" in report
    assert all(f"| {x['id']} | {x['statement']} | **{x['status']}** |" in report for x in record["claims"])
    figures = [line.split("(figures/")[1].rstrip(")") for line in report.splitlines() if "(figures/" in line]
    assert figures and all((tmp_path / "docs" / "figures" / f).stat().st_size > 1000 for f in figures)

    # --report-only judges the same sweeps again without training: the same claims, the first run's times
    again = subprocess.run(
        [sys.executable, "-m", "critical_periods.reproduce", "--quick", "--report-only", "--out", str(tmp_path / "runs"),
         "--docs", str(tmp_path / "docs")], capture_output=True, text=True, timeout=900,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    rejudged = json.loads((tmp_path / "docs" / "reproduction.json").read_text())
    assert rejudged["claims"] == record["claims"]
    assert rejudged["run"]["rejudged"] is True and record["run"]["rejudged"] is False
    assert rejudged["run"]["wall_minutes"] == record["run"]["wall_minutes"]
    assert "Judged again without retraining" in (tmp_path / "docs" / "reproduction.md").read_text()


def test_report_only_without_the_record_of_a_trained_run_is_refused_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "critical_periods.reproduce", "--report-only",
                             "--out", str(tmp_path / "runs"), "--docs", str(tmp_path / "docs")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "--report-only needs the record" in result.stderr
    assert not (tmp_path / "docs").exists() and not (tmp_path / "runs").exists()
