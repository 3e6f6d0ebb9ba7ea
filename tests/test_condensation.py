"""The init scale, the condensation probe and stiffness by input distance against brute force in
float64 and hand-built cases; the two claims on synthetic run records with known answers; and one
real training run with probes=condensation read back from its record."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from critical_periods.analysis.runs import Run
from critical_periods.config.validation import ConfigError
from critical_periods.models.mlp import MLP
from critical_periods.probes import StiffnessOptions, compute_probes
from critical_periods.probes.condensation import (
    CondensationOptions,
    condensation_from_vectors,
    condensation_metrics,
    first_linear,
    neuron_vectors,
)
from critical_periods.probes.stiffness_distance import stiffness_by_distance
from critical_periods.record import metric_names as names
from critical_periods.record.summary import Summary
from critical_periods.reproduction import claims as c
from critical_periods.reproduction import claims_condensation as cc
from critical_periods.reproduction.rules import load_rules
from critical_periods.vocabulary import Verdict

from conftest import TINY, run_cli

JUDGE = c.Judge(load_rules())
R = Verdict.REPRODUCED


# -- init scale -------------------------------------------------------------------------------------------


def test_init_scale_multiplies_every_linear_weight_and_bias_and_one_is_bitwise_the_default():
    torch.manual_seed(3)
    default = MLP((1, 8), 3, widths=(5, 4))
    torch.manual_seed(3)
    one = MLP((1, 8), 3, widths=(5, 4), init_scale=1.0)
    torch.manual_seed(3)
    small = MLP((1, 8), 3, widths=(5, 4), init_scale=0.01)
    for (name, a), b, s in zip(default.state_dict().items(), one.state_dict().values(), small.state_dict().values()):
        assert torch.equal(a, b), name
        assert torch.allclose(s, 0.01 * a, rtol=1e-6, atol=0), name


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), "small", True])
def test_a_bad_init_scale_is_refused_naming_the_key(bad):
    with pytest.raises(ConfigError, match="init_scale"):
        MLP((1, 8), 3, widths=(4,), init_scale=bad)


# -- condensation ------------------------------------------------------------------------------------------


def brute_force_condensation(vectors: np.ndarray, threshold: float) -> tuple[float, int, float]:
    """Double loop over pairs in float64; clusters by union-find over the aligned pairs."""
    m = len(vectors)
    parent = list(range(m))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    aligned, total, cosines = 0, 0, []
    for i in range(m):
        for j in range(i + 1, m):
            ni, nj = np.linalg.norm(vectors[i]), np.linalg.norm(vectors[j])
            cos = abs(float(vectors[i] @ vectors[j]) / (ni * nj)) if ni > 0 and nj > 0 else 0.0
            cosines.append(cos)
            total += 1
            if cos > threshold:
                aligned += 1
                parent[root(i)] = root(j)
    return aligned / total, len({root(i) for i in range(m)}), float(np.mean(cosines))


def test_condensation_matches_a_double_loop_on_random_and_clustered_vectors():
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(3, 6))
    # 12 neurons near 3 directions (some flipped), 8 random ones, one dead (zero) neuron
    clustered = [directions[k % 3] * rng.choice([-1, 1]) * rng.uniform(0.5, 2) + 0.05 * rng.normal(size=6) for k in range(12)]
    vectors = np.vstack([*clustered, rng.normal(size=(8, 6)), np.zeros((1, 6))])
    for threshold in (0.5, 0.9, 0.99):
        got = condensation_from_vectors(torch.tensor(vectors), threshold)
        fraction, clusters, mean_abs = brute_force_condensation(vectors, threshold)
        assert got[names.CONDENSATION_ALIGNED_FRACTION] == pytest.approx(fraction, abs=1e-12)
        assert got[names.CONDENSATION_CLUSTERS] == clusters
        assert got[names.CONDENSATION_MEAN_ABS_COS] == pytest.approx(mean_abs, abs=1e-12)
    assert condensation_from_vectors(torch.tensor(vectors), 0.9)[names.CONDENSATION_CLUSTERS] < 21


def test_parallel_neurons_are_one_direction_and_orthogonal_ones_are_all_apart():
    v = torch.tensor([1.0, -2.0, 0.5])
    parallel = torch.stack([v, -3 * v, 0.1 * v, 7 * v])
    got = condensation_from_vectors(parallel)
    assert got[names.CONDENSATION_ALIGNED_FRACTION] == 1.0 and got[names.CONDENSATION_CLUSTERS] == 1
    got = condensation_from_vectors(torch.eye(5))
    assert got[names.CONDENSATION_ALIGNED_FRACTION] == 0.0 and got[names.CONDENSATION_CLUSTERS] == 5
    assert got[names.CONDENSATION_MEAN_ABS_COS] == 0.0


def test_the_probe_reads_the_first_layer_with_its_bias_appended():
    model = MLP((1, 3), 2, widths=(4, 5))
    layer = first_linear(model)
    assert layer is model.features.fc1
    vectors = neuron_vectors(layer)
    assert vectors.shape == (4, 4) and torch.equal(vectors[:, -1], layer.bias.detach())
    with torch.no_grad():  # every neuron on one direction: condensed
        layer.weight.copy_(torch.outer(torch.tensor([1.0, -2.0, 3.0, 0.5]), torch.tensor([1.0, 2.0, 3.0])))
        layer.bias.copy_(torch.tensor([1.0, -2.0, 3.0, 0.5]))
    assert condensation_metrics(model, CondensationOptions())[names.CONDENSATION_ALIGNED_FRACTION] == 1.0
    with pytest.raises(ValueError, match="Linear"):
        first_linear(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match="threshold"):
        CondensationOptions(threshold=1.5)


# -- stiffness by input distance ----------------------------------------------------------------------------


def brute_force_binned(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, bins: int) -> dict[str, float]:
    """Per-example gradients one backward pass at a time; pairs, quantile edges and bins by loops."""
    grads = []
    for x, y in zip(inputs, labels):
        model.zero_grad()
        nn.functional.cross_entropy(model(x[None]), y[None]).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]).clone())
    model.zero_grad()
    pairs = []
    n = len(inputs)
    for i in range(n):
        for j in range(i + 1, n):
            cos = float(grads[i] @ grads[j] / (grads[i].norm() * grads[j].norm()))
            distance = math.sqrt(sum(float(a - b) ** 2 for a, b in zip(inputs[i].flatten(), inputs[j].flatten())))
            pairs.append((distance, cos))
    distances = np.array([d for d, _ in pairs])
    edges = [np.quantile(distances, k / bins) for k in range(1, bins)]  # linear interpolation, as torch.quantile
    members = {k: [] for k in range(bins)}
    for d, cos in pairs:
        members[sum(1 for e in edges if e < d)].append((d, cos))
    out, critical = {}, float(distances.max())
    for k in range(bins):
        out[names.stiffness_distance_cos(k)] = float(np.mean([cos for _, cos in members[k]]))
        out[names.stiffness_distance(k)] = float(np.mean([d for d, _ in members[k]]))
    for k in range(bins):
        if out[names.stiffness_distance_cos(k)] < 0:
            critical = out[names.stiffness_distance(k)]
            break
    out[names.STIFFNESS_CRITICAL_LENGTH] = critical
    return out


@pytest.mark.parametrize("bins", [1, 3, 5])
def test_binned_stiffness_matches_a_double_loop_on_a_tiny_float64_network(bins):
    torch.manual_seed(0)
    model = MLP((1, 4), 3, widths=(6,), activation="tanh").double()
    inputs = torch.randn(12, 1, 4, dtype=torch.float64)
    labels = torch.randint(0, 3, (12,))
    got = compute_probes(model, inputs, labels, stiffness=StiffnessOptions(distance_bins=bins)).metrics
    expected = brute_force_binned(model, inputs, labels, bins)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-10), key


def test_the_critical_length_is_the_nearest_negative_bin_or_the_largest_distance():
    x = torch.tensor([[0.0], [1.0], [3.0], [6.0]])  # distances 1, 2, 3, 3, 5, 6
    g = torch.tensor([[1.0, 0.0], [1.0, 0.1], [1.0, 0.2], [1.0, 0.3]])  # every cos > 0
    assert stiffness_by_distance(g @ g.T, x, bins=3)[names.STIFFNESS_CRITICAL_LENGTH] == 6.0
    g = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # (0,3), (1,3) at 6, 5: cos -1
    got = stiffness_by_distance(g @ g.T, x, bins=3)
    assert got[names.stiffness_distance_cos(0)] == pytest.approx(0.5)  # pairs at 1 (cos 1) and 2 (cos 0)
    assert got[names.STIFFNESS_CRITICAL_LENGTH] == pytest.approx(5.5)
    with pytest.raises(ValueError, match="distance_bins"):
        StiffnessOptions(distance_bins=-1)


# -- claims on synthetic records ---------------------------------------------------------------------------


def probe_run(seed: int, scale: float, series: dict[str, list[float]]) -> Run:
    """Probes at the initial weights (step 0) then after epochs 1, 2, ..."""
    length = len(next(iter(series.values())))
    rows = [{"step": e + 1 if e >= 0 else 0, "epoch": max(e, 0), **{k: v[e + 1] for k, v in series.items()}}
            for e in range(-1, length - 1)]
    summary = Summary.from_json({"status": "completed", "deficit": "none", "onset": 0, "length": 0, "seed": seed,
                                 "final/test_error": 0.4})
    return Run(job=f"{scale}-{seed}", path=Path(f"/nonexistent/{scale}-{seed}"), overrides=(), status="completed",
               summary=summary, config={"model": {"init_scale": scale}}, metrics=rows)


def condensation_runs(peak: dict[float, float]) -> list[Run]:
    runs = []
    for scale, height in peak.items():
        for seed in range(5):
            start = 0.001 * seed  # the same directions at every scale: one random draw, rescaled
            rise = [start] + [start + height * min(1.0, e / 3) * (1 + 0.05 * np.sin(seed + e)) for e in range(1, 21)]
            runs.append(probe_run(seed, scale, {names.CONDENSATION_ALIGNED_FRACTION: rise}))
    return runs


def test_small_init_condensing_is_reproduced_and_the_at_init_control_is_not():
    claim = cc.condensation_claim(JUDGE, condensation_runs({0.01: 0.7, 0.1: 0.08, 1.0: 0.0}), None)
    assert claim.status == R, claim.measured
    assert claim.control.status != R
    first, second = claim.judgement.parts
    assert first.effect == pytest.approx(0.7 * np.mean([1 / 3, 2 / 3, 1, 1, 1]), rel=0.05)
    assert second.effect > 0


def test_no_condensation_at_any_scale_is_not_reproduced():
    claim = cc.condensation_claim(JUDGE, condensation_runs({0.01: 0.01, 0.1: 0.0, 1.0: 0.0}), None)
    assert claim.status != R
    assert cc.condensation_claim(JUDGE, condensation_runs({0.01: 0.7, 1.0: 0.0}), None).status == Verdict.INCONCLUSIVE


def test_a_shrinking_critical_length_is_reproduced_and_its_time_shuffle_is_not():
    runs = [probe_run(seed, 1.0, {names.STIFFNESS_CRITICAL_LENGTH: [8.0] + [7.5 * 0.97 ** e + 0.05 * np.sin(seed + e)
                                                                         for e in range(20)]})
            for seed in range(5)]
    claim = cc.critical_length_claim(JUDGE, runs, None)
    assert claim.status == R and claim.judgement.parts[0].effect == pytest.approx(math.log(0.97 ** 19), abs=0.03)
    assert claim.control.status != R
    flat = [probe_run(seed, 1.0, {names.STIFFNESS_CRITICAL_LENGTH: [8.0] + [7.0 + 0.05 * np.sin(seed + e) for e in range(20)]})
            for seed in range(5)]
    assert cc.critical_length_claim(JUDGE, flat, None).status != R


# -- one real run --------------------------------------------------------------------------------------------


@pytest.mark.slow  # two training processes, ~17 s
def test_a_real_run_with_probes_condensation_logs_every_new_metric(tmp_path):
    args = [*[a for a in TINY if not a.startswith("probes=")], "probes=condensation", "probes.probe_size=32",
            "model.init_scale=0.01", "deficit=none", "probes.stiffness.distance_bins=4", f"hydra.run.dir={tmp_path}"]
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    probes = [r for r in rows if names.CONDENSATION_ALIGNED_FRACTION in r]
    assert [r["step"] for r in probes][0] == 0 and len(probes) >= 2
    for row in probes:
        assert 1 <= row[names.CONDENSATION_CLUSTERS] <= 32 and 0 <= row[names.CONDENSATION_ALIGNED_FRACTION] <= 1
        assert row[names.STIFFNESS_CRITICAL_LENGTH] > 0 and names.stiffness_distance_cos(3) in row
    bad = run_cli(*TINY, "model.init_scale=0", f"hydra.run.dir={tmp_path / 'bad'}", cwd=tmp_path)
    assert bad.returncode == 2 and "init_scale" in bad.stderr and "Traceback" not in bad.stderr
