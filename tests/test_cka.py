"""Linear CKA against explicit kernels and the HSIC U-statistic; layer representations of odd models."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from critical_periods.probes.cka import (
    _feature_space,
    _hsic,
    centred_gram,
    gram_cka,
    layerwise_cka,
    linear_cka,
)
from critical_periods.probes.representations import layer_representations

F64 = torch.float64


def assert_close(actual, expected, rtol: float = 1e-9, atol: float = 1e-12) -> None:
    torch.testing.assert_close(torch.as_tensor(actual, dtype=F64), torch.as_tensor(expected, dtype=F64),
                               rtol=rtol, atol=atol)


def _features(n: int, p: int, q: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Correlated, uncentred X (n, p) and Y (n, q): Y is a noisy linear map of X plus an offset."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, p, generator=g, dtype=F64) + 2.0
    y = x @ torch.randn(p, q, generator=g, dtype=F64) + 0.5 * torch.randn(n, q, generator=g, dtype=F64) - 1.0
    return x, y


# (N, p, q): shapes that take the feature-space path (N large) and the example-space path (p, q large)
SHAPES = [(30, 3, 7), (12, 40, 25), (9, 1, 2), (6, 11, 1)]


def _hsic_biased_dense(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    n = k.shape[0]
    h = torch.eye(n, dtype=F64) - torch.full((n, n), 1.0 / n, dtype=F64)
    return torch.trace(k @ h @ l @ h) / (n - 1) ** 2


def _hsic_debiased_loops(k: torch.Tensor, l: torch.Tensor) -> float:
    """The debiased HSIC formula, every sum written out over index pairs/triples (diagonals excluded)."""
    n = k.shape[0]
    idx = range(n)
    trace = sum(k[i, j] * l[j, i] for i in idx for j in idx if i != j)
    k_sum = sum(k[i, j] for i in idx for j in idx if i != j)
    l_sum = sum(l[i, j] for i in idx for j in idx if i != j)
    cross = sum(k[i, j] * l[j, m] for i in idx for j in idx for m in idx if i != j and j != m)
    return float((trace + k_sum * l_sum / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * cross) / (n * (n - 3)))


def _hsic_u_statistic(k: torch.Tensor, l: torch.Tensor) -> float:
    """HSIC as a U-statistic over ordered 4-tuples of distinct examples (its definition, Song et al.):
    the mean of k_ij l_ij + k_ij l_qr - 2 k_ij l_iq, which estimates
    E[k(x,x') l(y,y')] + E[k] E[l] - 2 E[k(x,x') l(y,y'')] without bias."""
    n = k.shape[0]
    terms = [k[i, j] * l[i, j] + k[i, j] * l[q, r] - 2 * k[i, j] * l[i, q]
             for i, j, q, r in itertools.permutations(range(n), 4)]
    return float(sum(terms) / len(terms))


@pytest.mark.parametrize("shape", SHAPES)
def test_biased_cka_matches_centred_kernels(shape):
    x, y = _features(*shape)
    k, l = x @ x.T, y @ y.T
    expected = _hsic_biased_dense(k, l) / torch.sqrt(_hsic_biased_dense(k, k) * _hsic_biased_dense(l, l))
    assert_close(linear_cka(x, y, debiased=False), expected)


@pytest.mark.parametrize("shape", SHAPES)
def test_debiased_cka_matches_the_formula_written_with_loops(shape):
    x, y = _features(*shape)
    k, l = x @ x.T, y @ y.T  # uncentred: the estimator must not depend on the features' offset
    expected = _hsic_debiased_loops(k, l) / (_hsic_debiased_loops(k, k) * _hsic_debiased_loops(l, l)) ** 0.5
    assert_close(linear_cka(x, y), expected)


def test_debiased_hsic_is_the_u_statistic():
    x, y = _features(7, 3, 2, seed=1)
    k, l = x @ x.T, y @ y.T
    assert _hsic_debiased_loops(k, l) == pytest.approx(_hsic_u_statistic(k, l), rel=1e-10)
    assert _hsic_debiased_loops(k, k) == pytest.approx(_hsic_u_statistic(k, k), rel=1e-10)


@pytest.mark.parametrize("debiased", [True, False])
def test_feature_and_example_space_agree(debiased):
    x, y = _features(15, 6, 9)
    gx, gy = centred_gram(x, debiased=debiased), centred_gram(y, debiased=debiased)
    example = (_hsic(gx.kernel, gx.row_sums, gy.kernel, gy.row_sums, debiased), gx.self_hsic, gy.self_hsic)
    feature = _feature_space(x - x.mean(0), y - y.mean(0), debiased)
    for a, b in zip(feature, example):  # the same numbers, including the factor both leave out
        assert_close(a, b)
    assert_close(gram_cka(gx, gy), feature[0] / torch.sqrt(feature[1] * feature[2]))


def test_a_kept_gram_gives_the_same_cka_and_refuses_a_mismatch():
    x, y = _features(20, 30, 12)
    assert_close(gram_cka(centred_gram(x), centred_gram(y)), linear_cka(x, y))
    kept = layerwise_cka({"a": centred_gram(x, debiased=False)}, {"a": y})
    assert kept["a"] == pytest.approx(float(linear_cka(x, y, debiased=False)), rel=1e-12)
    with pytest.raises(ValueError, match="same examples and estimator"):
        gram_cka(centred_gram(x), centred_gram(y, debiased=False))
    with pytest.raises(ValueError, match="same examples and estimator"):
        gram_cka(centred_gram(x), centred_gram(y[:19]))


@pytest.mark.parametrize("debiased", [True, False])
def test_cka_of_a_representation_with_itself_is_one(debiased):
    x, _ = _features(20, 5, 1)
    assert_close(linear_cka(x, x, debiased=debiased), 1.0)


@pytest.mark.parametrize("debiased", [True, False])
@pytest.mark.parametrize("shape", [(30, 6, 4), (10, 24, 16)])
def test_invariant_to_orthogonal_maps_and_isotropic_scaling(shape, debiased):
    x, y = _features(*shape)
    g = torch.Generator().manual_seed(5)
    qx, _ = torch.linalg.qr(torch.randn(shape[1], shape[1], generator=g, dtype=F64))
    qy, _ = torch.linalg.qr(torch.randn(shape[2], shape[2], generator=g, dtype=F64))
    reference = linear_cka(x, y, debiased=debiased)
    assert_close(linear_cka(x @ qx, y, debiased=debiased), reference)
    assert_close(linear_cka(x, 0.01 * y @ qy, debiased=debiased), reference)
    assert_close(linear_cka(7.0 * x @ qx, y @ qy, debiased=debiased), reference)


@pytest.mark.parametrize("debiased", [True, False])
def test_not_invariant_to_a_generic_invertible_map(debiased):
    x, _ = _features(40, 5, 1)
    g = torch.Generator().manual_seed(3)
    scales = torch.tensor([10.0, 3.0, 1.0, 0.3, 0.1], dtype=F64)
    stretch = torch.randn(5, 5, generator=g, dtype=F64) @ torch.diag(scales)
    assert torch.linalg.matrix_rank(stretch) == 5
    # x and x @ stretch carry the same information (one is an invertible map of the other) ...
    assert_close(linear_cka(x, x @ stretch @ torch.linalg.inv(stretch), debiased=debiased), 1.0)
    # ... yet CKA sees them as different: it weighs directions by their variance
    assert linear_cka(x, x @ stretch, debiased=debiased) < 0.9


def test_debiased_cka_of_independent_representations_is_near_zero_while_biased_is_not():
    # N small relative to the width: the regime of a 512-example probe set and 512-wide layers
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 256, generator=g, dtype=F64)
    y = torch.randn(64, 256, generator=g, dtype=F64)
    assert abs(linear_cka(x, y)) < 0.05
    assert linear_cka(x, y, debiased=False) > 0.5


def test_constant_representation_gives_nan_and_bad_shapes_are_refused():
    x, y = _features(10, 3, 2)
    assert torch.isnan(linear_cka(torch.ones(10, 4, dtype=F64), y))
    with pytest.raises(ValueError, match="same examples"):
        linear_cka(x, y[:9])
    with pytest.raises(ValueError, match="at least 4 examples"):
        linear_cka(x[:3], y[:3])
    with pytest.raises(ValueError, match="at least 4 examples"):
        linear_cka(torch.randn(3, 50), torch.randn(3, 50))  # the example-space path too
    with pytest.raises(ValueError, match=r"\(N, features\)"):
        linear_cka(x[:, 0], y)


def test_layerwise_cka_pairs_layers_by_name():
    x, y = _features(12, 4, 3)
    result = layerwise_cka({"a": x, "b": y, "only_here": x}, {"b": y, "a": y})
    assert list(result) == ["a", "b"]
    assert result["a"] == pytest.approx(float(linear_cka(x, y)), rel=1e-12)
    assert result["b"] == pytest.approx(1.0, rel=1e-12)


# --- layer representations: forward hooks vs the layers called by hand ----------------------------------


class _ScaledShared(nn.Module):
    """A scalar parameter, a Linear used twice, a layer returning a tuple, odd sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(5, 7)
        self.shared = nn.Linear(7, 7)
        self.scale = nn.Parameter(torch.tensor(1.5))
        self.rnn = nn.GRU(7, 3, batch_first=True)  # returns (output, h): not a tensor, skipped
        self.dropout = nn.Dropout(0.5)
        self.head = nn.Linear(7, 3)

    def forward(self, x):
        h = torch.tanh(self.first(x))
        h = self.dropout(torch.tanh(self.shared(h)))
        self.rnn(h[:, None, :])
        return self.head(self.scale * self.shared(h))


def test_layer_representations_match_the_layers_called_by_hand():
    torch.manual_seed(0)
    model = _ScaledShared().double().train()
    x = torch.randn(11, 5, dtype=F64)
    state = torch.random.get_rng_state()
    reps = layer_representations(model, x, chunk_size=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert model.training and model.dropout.training  # flags restored
    assert all(not z.requires_grad for z in reps.values())
    # root owns `scale`; the GRU's output is a tuple, so it is skipped
    assert list(reps) == ["root", "first", "shared", "head"]
    with torch.no_grad():
        first = model.first(x)
        shared_1 = model.shared(torch.tanh(first))
        shared_2 = model.shared(torch.tanh(shared_1))  # eval mode: dropout is the identity
        head = model.head(1.5 * shared_2)
    assert_close(reps["first"], first)
    assert_close(reps["shared"], torch.cat([shared_1, shared_2], dim=1))  # both calls, in order
    assert_close(reps["head"], head)
    assert_close(reps["root"], head)


def test_layer_representations_flatten_conv_outputs_and_survive_inplace_activations():
    model = nn.Sequential(nn.Conv1d(2, 3, 3), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(12, 2)).double()
    x = torch.randn(9, 2, 6, dtype=F64)
    reps = layer_representations(model, x, chunk_size=2)
    with torch.no_grad():
        conv = model[0](x)
    assert reps["0"].shape == (9, 12)
    assert_close(reps["0"], conv.flatten(1))  # before the in-place ReLU
    assert (reps["0"] < 0).any()
    assert_close(reps["3"], model(x).detach())
    assert_close(layer_representations(model, x)["0"], reps["0"])  # chunking changes nothing
    with pytest.raises(ValueError, match="chunk_size"):
        layer_representations(model, x, chunk_size=0)
    with pytest.raises(ValueError, match="empty"):
        layer_representations(model, x[:0])


def test_cka_vs_init_is_one_before_training_and_falls_after():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)).double()
    x = torch.randn(64, 6, dtype=F64)
    initial = layer_representations(model, x)
    assert layerwise_cka(initial, layer_representations(model, x)) == pytest.approx({"0": 1.0, "2": 1.0, "4": 1.0})
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    after = layerwise_cka(initial, layer_representations(model, x))
    assert all(value < 0.99 for value in after.values())
