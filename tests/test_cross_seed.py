"""Cross-seed layer comparison: mean CCA against the eigenvalues of the canonical-correlation matrix,
both CKAs against the project's (brute-force tested) linear_cka, matching accuracy and its control
on hand-built cases, and the claims on synthetic representations (the controls never reproduce)."""

from __future__ import annotations

import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.linalg
import torch

from critical_periods.analysis.cross_seed import (
    cross_seed,
    derangement,
    hidden_layers,
    least_squares_slope,
    matching_accuracy,
    mean_cca,
    prepare,
    similarities,
)
from critical_periods.probes.cka import linear_cka
from critical_periods.reproduction import claims_cross_seed as cs
from critical_periods.reproduction.claims import Judge
from critical_periods.reproduction.rules import load_rules
from critical_periods.vocabulary import RunStatus, Verdict

F64 = torch.float64


def _pair(n: int, p: int, q: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, p, generator=g, dtype=F64) + 1.5
    y = x @ torch.randn(p, q, generator=g, dtype=F64) + torch.randn(n, q, generator=g, dtype=F64)
    return x, y


def _cca_by_eigenvalues(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean of the squared canonical correlations as the eigenvalues of Sxx^-1 Sxy Syy^-1 Syx."""
    x, y = x.numpy() - x.numpy().mean(0), y.numpy() - y.numpy().mean(0)
    sxx, syy, sxy = x.T @ x, y.T @ y, x.T @ y
    m = np.linalg.solve(sxx, sxy) @ np.linalg.solve(syy, sxy.T)
    eigenvalues = np.sort(np.real(scipy.linalg.eigvals(m)))[::-1]
    return float(np.mean(eigenvalues[: min(x.shape[1], y.shape[1])]))


@pytest.mark.parametrize("n,p,q", [(40, 3, 5), (60, 7, 2), (25, 4, 4)])
def test_mean_cca_is_the_mean_squared_canonical_correlation(n, p, q):
    x, y = _pair(n, p, q)
    y = y + 3.0 * torch.randn(n, q, generator=torch.Generator().manual_seed(9), dtype=F64)  # correlations < 1
    expected = _cca_by_eigenvalues(x, y)
    assert 0.05 < expected < 0.95
    assert mean_cca(x, y) == pytest.approx(expected, rel=1e-9)


def test_mean_cca_ignores_invertible_maps_and_repeated_features_and_is_degenerate_when_features_outnumber_examples():
    x, y = _pair(50, 4, 3, seed=1)
    mixing = torch.randn(4, 4, generator=torch.Generator().manual_seed(2), dtype=F64) + 3 * torch.eye(4, dtype=F64)
    assert mean_cca(x @ mixing, y) == pytest.approx(mean_cca(x, y), rel=1e-9)
    assert mean_cca(torch.cat([x, x[:, :1] * 2.0], 1), y) == pytest.approx(mean_cca(x, y), rel=1e-9)  # rank 4, not 5
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(20, 30, generator=g, dtype=F64), torch.randn(20, 30, generator=g, dtype=F64)
    assert mean_cca(a, b) == pytest.approx(1.0, abs=1e-9)  # independent, yet "identical" to CCA (the paper's Sec. 3)
    assert float(linear_cka(a, b, debiased=True)) < 0.5


@pytest.mark.parametrize("n,p,q", [(30, 3, 7), (12, 40, 25), (50, 8, 8)])
def test_both_ckas_agree_with_linear_cka(n, p, q):
    x, y = _pair(n, p, q, seed=4)
    values = similarities(prepare(x), prepare(y))
    assert values["linear_cka"] == pytest.approx(float(linear_cka(x, y, debiased=False)), rel=1e-9)
    assert values["debiased_cka"] == pytest.approx(float(linear_cka(x, y, debiased=True)), rel=1e-9)
    assert values["mean_cca"] == pytest.approx(mean_cca(x, y), rel=1e-9)


def test_matching_accuracy_by_hand_and_nan_never_wins():
    assert matching_accuracy(np.array([[0.9, 0.1, 0.0], [0.8, 0.7, 0.1], [0.1, 0.2, 0.3]])) == pytest.approx(2 / 3)
    assert matching_accuracy(np.array([[np.nan, 0.1], [0.2, 0.3]])) == 0.5


def _layers(seed: int, n: int = 64, noise: float = 0.05, depth: int = 4) -> dict[str, torch.Tensor]:
    """A network's layers: layer l weights shared features z by exp(-1.5 |k - l|) (so every layer is
    an invertible linear image of z, which CCA cannot tell apart, while CKA sees the different
    weightings), plus seed noise that grows with l."""
    z = torch.randn(n, depth, generator=torch.Generator().manual_seed(123), dtype=F64)
    own = torch.Generator().manual_seed(1000 + seed)
    k = torch.arange(depth, dtype=F64)
    return {f"fc{l}": z * torch.exp(-1.5 * (k - l).abs()) + noise * (l + 1) * torch.randn(n, depth, generator=own, dtype=F64)
            for l in range(depth)}


def test_identical_networks_match_every_layer_and_the_deranged_control_matches_none():
    reps = {s: _layers(0) for s in range(3)}  # three identical networks
    result = cross_seed(reps)
    for name in ("linear_cka", "debiased_cka", "mean_cca"):
        assert result[name].matching() == {0: 1.0, 1: 1.0, 2: 1.0}
        assert set(result[name].deranged(0).matching().values()) == {0.0}
    assert np.allclose(np.diag(result["linear_cka"].matrix(2, 0)), 1.0)


def test_per_seed_values_average_over_the_other_seeds_and_use_the_transpose():
    reps = {s: _layers(s, noise=0.5) for s in (3, 5, 8)}
    result = cross_seed(reps)["linear_cka"]
    assert np.allclose(result.matrix(8, 3), result.matrix(3, 8).T)
    expected = np.mean([np.diag(result.matrix(5, 3)), np.diag(result.matrix(5, 8))], axis=0)
    assert np.allclose(result.diagonal()[5], expected)
    assert result.diagonal()[5][0] > result.diagonal()[5][-1]  # noise grows with the layer index
    assert least_squares_slope(result.diagonal()[5]) < 0


def test_derangement_has_no_fixed_point_and_bad_input_is_refused():
    rng = np.random.default_rng(0)
    for size in (2, 3, 6):
        assert not np.any(derangement(size, rng) == np.arange(size))
    with pytest.raises(ValueError, match="at least 2"):
        derangement(1, rng)
    with pytest.raises(ValueError, match="same examples"):
        cross_seed({0: {"a": torch.zeros(5, 2)}, 1: {"a": torch.zeros(6, 2)}})
    assert hidden_layers({"fc0": 0, "fc1": 0, "out": 0}) == ["fc0", "fc1"]


# -- the claims on synthetic runs ---------------------------------------------------------------------


def _run(seed: int, model: str, width: int | None, root: Path) -> SimpleNamespace:
    target = "critical_periods.models.mlp.MLP" if model == "mlp" else "critical_periods.models.conv1d.Conv1DNet"
    config = {"model": {"_target_": target, **({"widths": [width] * 6} if width else {})}}
    job = f"{model}-{width},seed={seed}"
    return SimpleNamespace(seed=seed, model=target.rsplit(".", 1)[-1], config=config, path=root / job, job=job,
                           completed=True, test_error=0.3, status=RunStatus.COMPLETED)


def _synthetic_loader(noise_of_width):
    """Layers with shared structure plus seed noise that grows with depth and falls with width."""
    def load(path: Path):
        model, rest = path.name.split("-", 1)
        width, seed = rest.split(",seed=")
        noise = noise_of_width(int(width)) if width != "None" else 0.1
        return {**_layers(int(seed), n=80, noise=noise, depth=6 if model == "mlp" else 3), "logits": torch.randn(80, 3, dtype=F64)}
    return load


def test_claims_reproduce_on_a_built_effect_and_their_controls_do_not(tmp_path):
    runs = [_run(s, "mlp", w, tmp_path) for w in (32, 128, 256) for s in range(10)]
    runs += [_run(s, "conv1d", None, tmp_path) for s in range(10)]
    judge = Judge(load_rules())
    claims = cs.cross_seed_claims(judge, runs, lambda study, name: f"{study}_{name}",
                                  load=_synthetic_loader(lambda w: 8.0 / w))
    by_rule = {(c.rule.id, c.model): c for c in claims}
    assert set(by_rule) == {(cs.MATCHING, "mlp"), (cs.MATCHING, "conv1d"), (cs.WIDTH, "mlp"), (cs.DEPTH, "mlp")}
    for claim in claims:
        assert claim.status == Verdict.REPRODUCED, claim.measured
        assert claim.control.status in (Verdict.NOT_REPRODUCED, Verdict.INCONCLUSIVE), claim.measured
    for name in ("layer_cka", "width", "depth"):
        assert (tmp_path / "analysis" / f"{name}.png").exists() and (tmp_path / "analysis" / f"{name}.pdf").exists()


def test_claims_are_not_reproduced_without_the_effect(tmp_path):
    # the same noise at every width and layer: no width effect, no depth trend
    runs = [_run(s, "mlp", w, tmp_path) for w in (32, 256) for s in range(10)]
    load = _synthetic_loader(lambda w: 0.0)
    flat = lambda path: {k: v + 0.3 * torch.randn(v.shape, generator=torch.Generator().manual_seed(zlib.crc32(path.name.encode())), dtype=F64)
                         for k, v in load(path).items()}
    claims = {c.rule.id: c for c in cs.cross_seed_claims(Judge(load_rules()), runs, lambda s, n: n, load=flat)}
    assert claims[cs.WIDTH].status != Verdict.REPRODUCED
    assert claims[cs.DEPTH].status != Verdict.REPRODUCED
    assert claims[cs.WIDTH].control.status != Verdict.REPRODUCED


def test_missing_runs_give_inconclusive_claims():
    claims = cs.cross_seed_claims(Judge(load_rules()), [], lambda s, n: n)
    assert [c.status for c in claims] == [Verdict.INCONCLUSIVE] * 4


@pytest.mark.slow
def test_quick_study_trains_reloads_and_judges_real_runs(tmp_path):
    """The quick grid of the cross_seed study, as the reproduction runs it (a real Hydra multirun in
    a subprocess, the seeds launcher), then the claims from the reloaded checkpoints."""
    from critical_periods.analysis.runs import load_sweep
    from critical_periods.reproduction.studies import STUDIES, run_study

    study = next(s for s in STUDIES if s.name == cs.STUDY)
    run_study(study, tmp_path, quick=True, extra=("logger=none",), threads=1)
    runs = load_sweep(tmp_path / cs.STUDY)
    assert len([r for r in runs if r.completed]) == 6
    measured = cs.measure(runs)
    assert set(measured) == {"mlp-8", "mlp-16", "conv1d"}
    assert len(measured["mlp-16"]["linear_cka"].layers) == 6  # the logits layer left out
    assert len(measured["conv1d"]["linear_cka"].layers) == 3
    claims = cs.cross_seed_claims(Judge(load_rules()), runs, lambda s, n: f"{s}_{n}")
    assert [c.status for c in claims] == [Verdict.INCONCLUSIVE] * 4  # 2 seeds: too few to judge
    assert (tmp_path / cs.STUDY / "analysis" / "layer_cka.png").exists()
