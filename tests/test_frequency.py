"""Frequency-principle filtering against explicit kernel sums and functions of known frequency content."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from torch import nn

from critical_periods.record.metric_names import FREQUENCY_ERROR_HIGH, FREQUENCY_ERROR_LOW
from critical_periods.probes.frequency import (
    DEFAULT_DELTA_FRACTION,
    default_delta,
    frequency_errors,
    frequency_metrics,
    low_pass_weights,
    median_pairwise_distance,
    probe_filter,
    split_frequencies,
)

F64 = torch.float64


def _circle(n: int = 400) -> tuple[torch.Tensor, torch.Tensor]:
    """Angles on a regular grid and the points (cos, sin): a 1-D periodic domain with no boundary."""
    theta = torch.arange(n, dtype=F64) * (2 * math.pi / n)
    return theta, torch.stack([theta.cos(), theta.sin()], dim=1)


def _low_pass_loops(x: torch.Tensor, f: torch.Tensor, delta: float) -> torch.Tensor:
    """f_low(x_i) = sum_j G(x_i - x_j) f(x_j) / sum_j G(x_i - x_j), one kernel value at a time."""
    rows = []
    for i in range(len(x)):
        g = [math.exp(-float(((x[i] - x[j]) ** 2).sum()) / (2 * delta**2)) for j in range(len(x))]
        rows.append(sum(gj * f[j] for j, gj in enumerate(g)) / sum(g))
    return torch.stack(rows)


def test_low_pass_matches_explicit_kernel_sums():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(13, 2, 3, generator=g, dtype=F64)  # flattened to 6 features
    f = torch.randn(13, 4, generator=g, dtype=F64)
    low, high = split_frequencies(f, low_pass_weights(x, delta=1.7))
    expected = _low_pass_loops(x.flatten(1), f, 1.7)
    torch.testing.assert_close(low, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(high, f - expected, rtol=1e-12, atol=1e-12)


def test_split_recovers_the_low_and_high_components_of_a_known_signal():
    # sin(t) + sin(20 t) on the circle. Gaussian smoothing multiplies frequency k by exp(-k^2 delta^2 / 2):
    # at delta = 0.2, 0.98 for k = 1 and 3e-4 for k = 20.
    theta, x = _circle()
    low_component, high_component = theta.sin(), (20 * theta).sin()
    low, high = split_frequencies((low_component + high_component)[:, None], low_pass_weights(x, delta=0.2))
    gain_1, gain_20 = math.exp(-0.2**2 / 2), math.exp(-(20**2) * 0.2**2 / 2)
    torch.testing.assert_close(low[:, 0], gain_1 * low_component + gain_20 * high_component, rtol=0, atol=2e-3)
    assert (low[:, 0] - low_component).abs().max() < 0.025
    assert (high[:, 0] - high_component).abs().max() < 0.025


def test_low_part_of_a_constant_is_the_constant():
    x = torch.rand(30, 3, dtype=F64) * torch.tensor([1.0, 10.0, 0.1], dtype=F64)  # uneven density, anisotropic
    constant = torch.full((30, 5), -2.5, dtype=F64)
    for delta in (0.01, 1.0, 100.0):
        low, high = split_frequencies(constant, low_pass_weights(x, delta))
        torch.testing.assert_close(low, constant, rtol=1e-12, atol=1e-12)
        assert high.abs().max() < 1e-12


def test_delta_limits_identity_and_mean():
    x = torch.randn(20, 4, dtype=F64)
    f = torch.randn(20, 3, dtype=F64)
    tiny, _ = split_frequencies(f, low_pass_weights(x, delta=1e-3))
    huge, _ = split_frequencies(f, low_pass_weights(x, delta=1e4))
    torch.testing.assert_close(tiny, f)  # the softmax underflows to the identity, not to 0/0
    torch.testing.assert_close(huge, f.mean(0).expand_as(f), rtol=1e-6, atol=1e-6)


def test_errors_are_zero_for_a_perfect_fit_and_match_the_definition():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(17, 5, generator=g, dtype=F64)
    y = torch.nn.functional.one_hot(torch.arange(17) % 4, 4).double()
    h = torch.softmax(torch.randn(17, 4, generator=g, dtype=F64), dim=1)
    weights = low_pass_weights(x, 2.0)
    assert frequency_errors(y, y, weights) == (0.0, 0.0)
    e_low, e_high = frequency_errors(y, h, weights)
    y_low, h_low = _low_pass_loops(x, y, 2.0), _low_pass_loops(x, h, 2.0)
    assert e_low == pytest.approx(float((y_low - h_low).norm() / y_low.norm()), rel=1e-12)
    assert e_high == pytest.approx(float(((y - y_low) - (h - h_low)).norm() / (y - y_low).norm()), rel=1e-12)


def test_metrics_use_softmax_outputs_and_one_hot_labels():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(24, 1, 6, generator=g)
    labels = torch.arange(24) % 3
    logits = torch.randn(24, 3, generator=g)
    weights = low_pass_weights(x, 1.5)
    metrics = frequency_metrics(labels, logits, weights)
    expected = frequency_errors(torch.eye(3, dtype=F64)[labels], torch.softmax(logits.double(), 1), weights)
    assert metrics == pytest.approx({FREQUENCY_ERROR_LOW: expected[0], FREQUENCY_ERROR_HIGH: expected[1]}, rel=1e-12)


def test_probe_filter_uses_the_default_delta_unless_given_one():
    x = torch.randn(24, 1, 6, dtype=F64)
    default = DEFAULT_DELTA_FRACTION * median_pairwise_distance(x)
    torch.testing.assert_close(probe_filter(x), low_pass_weights(x, default), rtol=0, atol=0)
    torch.testing.assert_close(probe_filter(x, 0.7), low_pass_weights(x, 0.7), rtol=0, atol=0)


def test_default_delta_is_a_fraction_of_the_median_pairwise_distance():
    x = torch.randn(9, 2, 2, dtype=F64)
    flat = x.flatten(1)
    distances = [float((flat[i] - flat[j]).norm()) for i in range(9) for j in range(i + 1, 9)]
    # 36 pairs: the lower of the two middle values
    assert median_pairwise_distance(x) == pytest.approx(statistics.median_low(distances))
    assert default_delta(x, 0.5) == pytest.approx(0.5 * median_pairwise_distance(x))
    assert default_delta(3.0 * x) == pytest.approx(3.0 * default_delta(x))  # scales with the data


def test_bad_arguments_are_refused():
    x = torch.randn(6, 2)
    y = torch.eye(3)[torch.arange(6) % 3]
    with pytest.raises(ValueError, match="delta=0"):
        low_pass_weights(x, 0)
    with pytest.raises(ValueError, match="same shape"):
        frequency_errors(y, y[:, :2], low_pass_weights(x, 1.0))
    with pytest.raises(ValueError, match="one row per input"):
        frequency_errors(y, y, low_pass_weights(x[:5], 1.0))
    with pytest.raises(ValueError, match="fraction must be > 0"):
        default_delta(x, -1.0)
    with pytest.raises(ValueError, match="at least 2"):
        median_pairwise_distance(x[:1])


def test_a_small_network_fits_the_low_frequencies_first():
    # 1-D regression of sin(x) + sin(5x): delta = 0.5 keeps 88% of sin(x) and 4% of sin(5x) in the low part.
    torch.manual_seed(0)
    x = torch.linspace(-math.pi, math.pi, 201)[:, None]
    y = torch.sin(x) + torch.sin(5 * x)
    net = nn.Sequential(nn.Linear(1, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    weights = low_pass_weights(x, 0.5)
    errors = {}
    for step in range(401):
        if step in (0, 100, 400):
            with torch.no_grad():
                errors[step] = frequency_errors(y, net(x), weights)
        optimiser.zero_grad()
        ((net(x) - y) ** 2).mean().backward()
        optimiser.step()
    (low_0, high_0), (low_100, high_100), (low_400, high_400) = errors[0], errors[100], errors[400]
    assert low_0 > 0.5 and high_0 > 0.9
    assert low_100 < 0.25 and high_100 > 0.8  # the low part is fitted, the high part barely
    assert high_400 < 0.5  # ... and the high part follows
