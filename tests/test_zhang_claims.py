"""The Zhang et al. / Fort random-label claims on run records with known answers, judged by the
shipped rules: each control must come out not reproduced or inconclusive."""

from pathlib import Path

import numpy as np

from critical_periods.analysis.runs import Run
from critical_periods.record import metric_names as names
from critical_periods.record.summary import Summary
from critical_periods.reproduction import claims as c
from critical_periods.reproduction import claims_zhang as z
from critical_periods.reproduction.rules import load_rules
from critical_periods.vocabulary import Verdict

JUDGE = c.Judge(load_rules())
R, N, I = Verdict.REPRODUCED, Verdict.NOT_REPRODUCED, Verdict.INCONCLUSIVE
EPOCHS = 40


def wobble(seed: int, scale: float) -> float:
    return scale * np.sin(1.7 * seed + 0.3)


def fit_run(kind: str, seed: int, fit_epoch: int, error: float, gap: float, path: Path = Path("sweep/job")) -> Run:
    """Train accuracy rising linearly from 0.1 to 1.0 at ``fit_epoch`` (epoch index), stiffness probes
    every 10 epochs with within- minus between-class gap ``gap``."""
    rows = []
    for epoch in range(EPOCHS):
        acc = min(1.0, 0.1 + 0.9 * epoch / fit_epoch)
        rows.append({"step": 28 * (epoch + 1), "epoch": epoch, names.TRAIN_ACC: acc, names.VAL_ACC: 1 - error})
    for epoch in range(0, EPOCHS, 10):
        same = 0.1 + gap + wobble(seed + epoch, 0.002)
        rows.append({"step": 28 * epoch, "epoch": epoch, names.STIFFNESS_COS_SAME: same, names.STIFFNESS_COS_DIFF: 0.1})
    summary = {"status": "completed", "deficit": kind, "onset": 0, "length": EPOCHS, "seed": seed, "epochs": EPOCHS,
               "final/test_error": error}
    return Run(job=f"{kind}-{seed}", path=path / f"{kind}-{seed}", overrides=(), status="completed",
               summary=Summary.from_json(summary), config={}, metrics=rows)


def fit_study(random_fit: int = 30, true_fit: int = 12, random_error: float = 0.90, gap_random: float = 0.0,
              path: Path = Path("sweep")) -> list[Run]:
    runs = []
    for seed in range(5):
        runs.append(fit_run("random_labels", seed, random_fit + seed % 2, random_error + wobble(seed, 0.008),
                            gap_random + wobble(seed, 0.004), path))
        runs.append(fit_run("none", seed, true_fit, 0.35 + wobble(seed, 0.01), 0.2, path))
    for seed in range(100, 105):
        runs.append(fit_run("none", seed, true_fit + (seed % 3) - 1, 0.35, 0.2, path))
    return runs


def test_epochs_to_fit_counts_from_one_and_censors_at_the_budget():
    assert z.epochs_to_fit({0: 0.2, 1: 0.98, 2: 0.99, 3: 1.0}, 80) == (3, True)
    assert z.epochs_to_fit({0: 0.2, 1: 0.98}, 80) == (80, False)


def test_random_labels_fitted_slower_at_chance_and_without_class_structure():
    runs = fit_study()
    fit = z.fit_claim(JUDGE, runs, None)
    assert fit.status == R, fit.measured
    assert fit.control.status in (N, I), fit.measured
    factor = fit.numbers["slowdown_factor"]
    assert factor.startswith("2.") or factor.startswith("1.9"), factor  # 30-31 epochs vs 12, counted from 1
    chance = z.chance_claim(JUDGE, runs, None)
    assert chance.status == R and chance.control.status == N, chance.measured
    stiff = z.stiffness_claim(JUDGE, runs, None)
    assert stiff.status == R and stiff.control.status == N, stiff.measured


def test_no_slow_down_no_fit_above_chance_and_class_structure_are_not_reproduced():
    runs = fit_study(random_fit=12, random_error=0.70, gap_random=0.2)
    fit = z.fit_claim(JUDGE, runs, None)
    slower = next(p for p in fit.judgement.parts if p.part.name == "slower than true labels")
    assert slower.status == N, fit.measured
    assert z.chance_claim(JUDGE, runs, None).status == N
    assert z.stiffness_claim(JUDGE, runs, None).status == N
    never = [r for r in fit_study(random_fit=60) if r.deficit == "none" or r.seed != 0] + \
            [fit_run("random_labels", 0, 60, 0.9, 0.0)]
    assert "censored" in z.fit_claim(JUDGE, never, None).measured


def window_run(kind: str, seed: int, error: float) -> Run:
    summary = {"status": "completed", "deficit": kind, "onset": 0, "length": 20, "seed": seed, "epochs": 60,
               "final/test_error": error}
    rows = [{"step": 28 * (e + 1), "epoch": e, names.TRAIN_ACC: 1.0, names.VAL_ACC: 1 - error} for e in range(60)]
    return Run(job=f"{kind}-{seed}", path=Path("w") / f"{kind}-{seed}", overrides=(), status="completed",
               summary=Summary.from_json(summary), config={}, metrics=rows)


def test_window_harm_is_observed_with_its_paired_effect():
    runs = [window_run("none", s, 0.30 + wobble(s, 0.004)) for s in (*range(5), *range(100, 105))]
    runs += [window_run("random_labels", s, 0.35 + wobble(s, 0.004)) for s in range(5)]
    runs += [window_run("shuffled_pixels", s, 0.30 + wobble(s, 0.004)) for s in range(5)]
    claim = z.window_claim(JUDGE, runs, None)
    assert claim.status == Verdict.OBSERVED
    harm = {p.part.name: p.effect for p in claim.judgement.parts}
    assert abs(harm["random labels, lasting harm"] - 5.0) < 1e-9 and abs(harm["shuffled pixels, lasting harm"]) < 1e-9


def test_figures_are_drawn_as_png_and_pdf_into_the_sweeps_analysis_folder(tmp_path):
    runs = fit_study(path=tmp_path / "zhang_fit")
    claims = z.zhang_claims(JUDGE, runs, [], lambda study, name: f"{study}_{name}")
    assert [cl.rule.id for cl in claims] == ["zhang-random-labels-fit", "zhang-random-labels-chance",
                                             "fort-stiffness-random-labels", "zhang-early-window-harm"]
    drawn = sorted(p.name for p in (tmp_path / "zhang_fit" / "analysis").iterdir())
    assert drawn == sorted(f"{n}{s}" for n in ("fit_curves", "test_error", "stiffness") for s in (".png", ".pdf"))
