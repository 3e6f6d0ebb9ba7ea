"""The reproduction: verdict rules on hand-made records with known answers, and (slow) the whole
command on its cut-down grid."""

import subprocess
import sys
from pathlib import Path

import pytest

from critical_periods.analysis.runs import Run
from critical_periods.reproduction.claims import NO_DATA, NOT, PARTLY, REPRODUCED, critical_period_claims, fisher_claims


def run(deficit: str, length: int, error: float, seed: int = 0, onset: int = 0, metrics=()) -> Run:
    summary = {"status": "completed", "deficit": deficit, "onset": onset, "length": length, "seed": seed,
               "final/test_error": error}
    return Run(job=f"{deficit}-{onset}-{length}-{seed}", path=Path("."), overrides=(), status="completed",
               summary=summary, config={}, metrics=list(metrics))


def kinds_sweep(blur_late: float, flip_late: float, noise_late: float) -> list[Run]:
    runs = [run("none", 0, 0.30, seed=0), run("none", 0, 0.31, seed=1)]
    for kind, late in (("blur", blur_late), ("vertical_flip", flip_late), ("noise", noise_late),
                       ("label_permutation", 0.305)):
        runs += [run(kind, 20, 0.31), run(kind, 80, late)]
    return runs


def test_critical_period_verdicts_follow_their_rules():
    kinds = kinds_sweep(blur_late=0.45, flip_late=0.31, noise_late=0.36)
    constant = [run("none", 0, 0.30), run("none", 0, 0.30, seed=1), run("blur", 40, 0.33), run("blur", 80, 0.40)]
    claims = critical_period_claims(kinds, constant)
    by_title = {c.title: c for c in claims}
    assert by_title["Blur early in training does lasting harm, growing with the removal epoch"].verdict == REPRODUCED
    assert by_title["A vertical flip has no critical period"].verdict == REPRODUCED
    assert by_title["A label permutation has no critical period"].verdict == REPRODUCED
    assert by_title["Noise is a milder deficit than blur"].verdict == REPRODUCED
    assert by_title["The blur effect survives a constant learning rate"].verdict == REPRODUCED
    assert "+14.5 pp" in by_title["Blur early in training does lasting harm, growing with the removal epoch"].measured


def test_a_flip_with_lasting_harm_or_an_effect_within_seed_noise_is_not_a_reproduction():
    claims = {c.title: c for c in critical_period_claims(kinds_sweep(0.315, 0.40, 0.50), [])}
    # Blur +1 pp over a 30.5% baseline is inside the 2 pp bar: only "partly".
    assert claims["Blur early in training does lasting harm, growing with the removal epoch"].verdict == PARTLY
    assert claims["A vertical flip has no critical period"].verdict == NOT
    assert claims["Noise is a milder deficit than blur"].verdict == NOT
    assert claims["The blur effect survives a constant learning rate"].verdict == NO_DATA


def test_fisher_rise_then_fall_and_its_link_to_sensitivity():
    trace = [1.0, 8.0, 10.0, 6.0, 3.0, 2.0]  # initial weights, then after epochs 0..4
    val = [0.5, 0.6, 0.7, 0.75, 0.8]
    metrics = [{"step": 0, "epoch": 0, "fisher/trace": trace[0]}]
    metrics += [{"step": 10 * (e + 1), "epoch": e, "fisher/trace": t, "val/acc": a} for e, (t, a) in enumerate(zip(trace[1:], val))]
    baseline = run("none", 0, 0.30, metrics=metrics)
    # Sensitivity falls with the onset, as the trace inside a 1-epoch window does after epoch 1.
    windows = [run("blur", 1, 0.30 + d, onset=o) for o, d in ((1, 0.08), (2, 0.05), (3, 0.02), (4, 0.01))]
    rise, link = fisher_claims([baseline, *windows])
    assert rise.verdict == REPRODUCED and "after epoch 1" in rise.measured
    assert link.verdict == REPRODUCED


@pytest.mark.slow
def test_quick_reproduction_writes_the_report_and_its_figures(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "critical_periods.reproduce", "--quick", "--out", str(tmp_path / "runs"),
         "--docs", str(tmp_path / "docs")], capture_output=True, text=True, timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = (tmp_path / "docs" / "reproduction.md").read_text()
    assert "## Verdicts" in report and "Wall time" in report
    figures = [line.split("(figures/")[1].rstrip(")") for line in report.splitlines() if "(figures/" in line]
    assert figures and all((tmp_path / "docs" / "figures" / f).stat().st_size > 1000 for f in figures)
