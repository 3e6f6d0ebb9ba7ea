"""Frequency principle, filtering method (Xu, Zhang, Luo, Xiao, Ma 2019): does the network fit the
low-frequency part of the target function before the high-frequency part?

On the probe set x_1..x_N (inputs flattened), a Gaussian kernel in input space
G(x - x') = exp(-||x - x'||^2 / (2 delta^2)) splits any function f on the probe set into::

    f_low(x_i) = sum_j G(x_i - x_j) f(x_j) / sum_j G(x_i - x_j)      (a normalised local average)
    f_high     = f - f_low

With y the one-hot targets and h the softmax outputs (N x C), the relative errors are::

    e_low  = ||y_low  - h_low||  / ||y_low||
    e_high = ||y_high - h_high|| / ||y_high||

(Frobenius norms over examples x classes). The filter is linear, so y_low - h_low = (y - h)_low:
e_low is the smooth part of the residual relative to the smooth part of the target. The frequency
principle predicts e_low falls before e_high.

delta sets what "low" means: as delta -> 0 the average is x_i alone (f_low = f, e_high = 0/0), as
delta -> infinity it is the probe-set mean. The default, ``DEFAULT_DELTA_FRACTION`` x the median
pairwise distance of the probe inputs, scales with the data. Measured on mnist1d's probe set (512
normalised training examples, 40 features, median pairwise distance 8.46, median nearest-neighbour
distance 4.48), by fraction of the median:

=========  ============  ===============================  ===============  ====================
fraction   self weight   centred target energy in y_low   ||y_high||/||y||  argmax y_low = label
=========  ============  ===============================  ===============  ====================
0.15       0.99          98%                              0.02             100%
0.2        0.80          71%                              0.22             100%
0.25       0.41          28%                              0.56             100%
**0.3**    **0.17**      **9.5%**                         **0.76**         **95.5%**
0.4        0.04          2.2%                             0.89             64%
0.5        0.01          1.0%                             0.92             37%
=========  ============  ===============================  ===============  ====================

(probe set of seed 0; seed 1 gives the first three columns to within 0.01 and 97% in the last at
0.3. Self weight: the mean of G(0)/sum_j G(x_i - x_j); centred energy: ||y_low - mean(y)||^2 /
||y - mean(y)||^2, the share of the class signal the low part keeps.) At 0.3 the low part is a neighbourhood average
(each example weighs 17% in its own) that still names the right class for 95.5% of the examples: a
smooth, class-consistent function, and both parts are far from zero. The transition is sharp because
distances concentrate in many dimensions; in data of much higher dimension than 40 the useful
fraction is closer to 1, so give ``delta`` explicitly there (and check the self weight).

Memory: O(N^2) float64 (two N x N matrices, 4 MB at N = 512). The filter matrix depends only on the
probe inputs and delta (:func:`probe_filter`), so it can be computed once per run.

>>> x = torch.linspace(0, 1, 50)[:, None]
>>> constant = torch.full((50, 2), 3.0)
>>> low, high = split_frequencies(constant, low_pass_weights(x, delta=0.1))
>>> bool(torch.allclose(low, constant.double()) and high.abs().max() < 1e-12)
True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from critical_periods.record.metric_names import FREQUENCY_ERROR_HIGH, FREQUENCY_ERROR_LOW

# delta = this x the median pairwise distance of the probe inputs; see the table above.
DEFAULT_DELTA_FRACTION = 0.3


def _flat(inputs: Tensor) -> Tensor:
    return inputs.reshape(inputs.shape[0], -1).double()


def median_pairwise_distance(inputs: Tensor) -> float:
    """Median (the lower middle value for an even count) of ||x_i - x_j|| over the pairs i < j."""
    if inputs.shape[0] < 2:
        raise ValueError(f"the median pairwise distance needs at least 2 inputs, got {inputs.shape[0]}")
    x = _flat(inputs)
    i, j = torch.triu_indices(len(x), len(x), offset=1, device=x.device)
    return float(torch.cdist(x, x)[i, j].median())


def default_delta(inputs: Tensor, fraction: float = DEFAULT_DELTA_FRACTION) -> float:
    """``fraction`` x the median pairwise distance of ``inputs``: a kernel width that scales with the data."""
    if not fraction > 0:
        raise ValueError(f"the delta fraction must be > 0, got {fraction}")
    return fraction * median_pairwise_distance(inputs)


def low_pass_weights(inputs: Tensor, delta: float) -> Tensor:
    """(N, N) float64 row-stochastic W with W_ij = G(x_i - x_j) / sum_k G(x_i - x_k).

    Computed as a softmax of -||x_i - x_j||^2 / (2 delta^2) over j, so a small delta underflows to
    the identity rather than to 0/0.
    """
    if not delta > 0:
        raise ValueError(
            f"probes.representation.delta={delta!r} is not allowed: it must be > 0 (or null for the default)"
        )
    x = _flat(inputs)
    squared = torch.cdist(x, x).square()
    return torch.softmax(-squared / (2.0 * delta**2), dim=1)


def split_frequencies(values: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """(f_low, f_high) of ``values`` (N, ...) given :func:`low_pass_weights`; float64, shaped like ``values``."""
    f = values.reshape(values.shape[0], -1).double()
    low = weights @ f
    return low.reshape(values.shape), (f - low).reshape(values.shape)


def probe_filter(inputs: Tensor, delta: float | None = None) -> Tensor:
    """:func:`low_pass_weights` of the probe inputs, with :func:`default_delta` when ``delta`` is None.
    The probe set and delta are fixed for a run, so a caller that probes often can keep this matrix."""
    return low_pass_weights(inputs, default_delta(inputs) if delta is None else delta)


def frequency_errors(targets: Tensor, outputs: Tensor, weights: Tensor) -> tuple[float, float]:
    """(e_low, e_high) of ``outputs`` h against ``targets`` y, both (N, C), split by ``weights``
    (:func:`low_pass_weights` of the N inputs). NaN for a part of y that is exactly zero."""
    if targets.shape != outputs.shape or targets.shape[0] != weights.shape[0]:
        raise ValueError(
            f"targets {tuple(targets.shape)} and outputs {tuple(outputs.shape)} must have the same shape, "
            f"one row per input ({weights.shape[0]})"
        )
    y_low, y_high = split_frequencies(targets, weights)
    r_low, r_high = split_frequencies(targets.double() - outputs.double(), weights)  # linear filter
    return float(r_low.norm() / y_low.norm()), float(r_high.norm() / y_high.norm())


def frequency_metrics(labels: Tensor, logits: Tensor, weights: Tensor) -> dict[str, float]:
    """``frequency/error_low`` and ``frequency/error_high``: :func:`frequency_errors` of the softmax
    outputs against the one-hot labels (``logits`` (N, C), ``labels`` (N,) class indices)."""
    targets = F.one_hot(labels.long(), logits.shape[1])
    e_low, e_high = frequency_errors(targets, torch.softmax(logits.double(), dim=1), weights)
    return {FREQUENCY_ERROR_LOW: e_low, FREQUENCY_ERROR_HIGH: e_high}
