"""Stiffness against input distance and the dynamical critical length (Fort et al. 2019, Sec. 5).

From the (N, N) Gram matrix of true-label gradients (the stiffness probe's) and the probe inputs:
every unordered pair i < j has a cos stiffness ``c_ij = G_ij / sqrt(G_ii G_jj)`` (0 if a gradient
is 0) and an input distance ``d_ij = |x_i - x_j|`` (Euclidean, flattened inputs). The pairs are split
into B bins of equal count by the quantiles of the d_ij: with inner edges ``e_k`` = the k/B quantile
(k = 1..B-1), bin k holds the pairs with ``e_k < d_ij <= e_(k+1)`` (``e_0 = -inf``, ``e_B = inf``).
Per bin: the mean cos stiffness and the mean distance of its pairs (NaN for an empty bin). The
critical length is the mean distance of the nearest bin whose mean cos stiffness is below 0; when no
bin's is, the largest pair distance (stiffness stays positive over the whole probe set: censored).

The probe set is fixed over a run, so the bins are the same at every probe. Cost on top of the Gram
matrix: the N^2 distances (O(N^2 D) time, D input values) and a sort of the N(N-1)/2 pairs;
O(N^2) memory.
"""

from __future__ import annotations

import torch
from torch import Tensor

from critical_periods.record import metric_names as names


def pair_distances(inputs: Tensor) -> Tensor:
    """(N, N) Euclidean distances between the flattened ``inputs``, float64, computed directly (not
    through the |x|^2 - 2 x.y + |y|^2 expansion, which loses digits for near points)."""
    flat = inputs.detach().flatten(1).double()
    return torch.cdist(flat, flat, compute_mode="donot_use_mm_for_euclid_dist")


def cos_from_gram(gram: Tensor) -> Tensor:
    gram = gram.double()
    norms = gram.diagonal().clamp_min(0).sqrt()
    scale = torch.outer(norms, norms)
    return torch.where(scale > 0, gram / torch.where(scale > 0, scale, 1.0), 0.0)


def stiffness_by_distance(gram: Tensor, inputs: Tensor, bins: int) -> dict[str, float]:
    """``stiffness/by_distance/<kk>/cos``, ``.../distance`` for kk < ``bins`` and ``stiffness/critical_length``
    (see the module docstring).

    >>> x = torch.tensor([[0.0], [1.0], [3.0]])          # distances 1 (0,1), 2 (1,2), 3 (0,2)
    >>> g = torch.tensor([[1.0, 0.0], [1.0, 1.0], [-1.0, 0.0]])  # cos: (0,1) 0.71, (1,2) -0.71, (0,2) -1
    >>> m = stiffness_by_distance(g @ g.T, x, bins=3)
    >>> round(m["stiffness/by_distance/00/cos"], 2), m["stiffness/critical_length"]
    (0.71, 2.0)
    """
    if bins < 1:
        raise ValueError(f"probes.stiffness.distance_bins={bins!r}: the binned stiffness needs at least 1 bin")
    n = gram.shape[0]
    rows, cols = torch.triu_indices(n, n, offset=1, device=gram.device)
    cos = cos_from_gram(gram)[rows, cols]
    distance = pair_distances(inputs).to(gram.device)[rows, cols]
    if distance.numel() == 0:
        raise ValueError("the binned stiffness needs at least 2 probe examples")
    inner = torch.quantile(distance, torch.arange(1, bins, dtype=torch.float64, device=distance.device) / bins)
    which = torch.bucketize(distance, inner, right=False)  # bin k: inner[k-1] < d <= inner[k]
    metrics: dict[str, float] = {}
    critical = float(distance.max())
    found = False
    for k in range(bins):
        members = which == k
        mean_cos = float(cos[members].mean()) if members.any() else float("nan")
        mean_distance = float(distance[members].mean()) if members.any() else float("nan")
        metrics[names.stiffness_distance_cos(k)] = mean_cos
        metrics[names.stiffness_distance(k)] = mean_distance
        if not found and mean_cos < 0:  # NaN < 0 is False: an empty bin never ends the search
            critical, found = mean_distance, True
    metrics[names.STIFFNESS_CRITICAL_LENGTH] = critical
    return metrics
