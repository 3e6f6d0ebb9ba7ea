"""Covariance K of per-example gradients (Jastrzebski et al. 2020); the mean gradient (Achille Fig. 6)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class CovarianceOptions:
    """threshold: lambda_K^* is the smallest eigenvalue of K that is >= threshold * lambda_K^1."""

    threshold: float = 1e-3


def covariance_spectrum(gram: Tensor) -> Tensor:
    """Eigenvalues of ``K = (1/N) sum_i (g_i - g)(g_i - g)^T`` from the (N, N) Gram matrix, descending.

    K (P x P) and the centred Gram matrix over N (N x N) share their nonzero eigenvalues, so this costs
    one N x N eigensolve. Returns N values in float64 (at most N - 1 of them nonzero).

    >>> g = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)  # two gradients, mean 0
    >>> covariance_spectrum(g @ g.T).tolist()
    [1.0, 0.0]
    """
    gram = gram.double()
    n = gram.shape[0]
    if not torch.isfinite(gram).all():  # eigh may fail to converge on NaN; report NaN instead
        return torch.full((n,), float("nan"), dtype=torch.float64, device=gram.device)
    centred = gram - gram.mean(0, keepdim=True) - gram.mean(1, keepdim=True) + gram.mean()
    return torch.linalg.eigvalsh(centred / n).flip(0)


def gradient_covariance_metrics(
    gram: Tensor, mean_gradient: Tensor, threshold: float = 1e-3
) -> dict[str, float]:
    """Break-even statistics of K, and the mean gradient's norm, mean and std.

    With ``g_i`` the gradient of example i's cross-entropy (true labels) and ``g = (1/N) sum_i g_i``:

    * ``break_even/trace_k``: ``tr K = (1/N) sum_i ||g_i||^2 - ||g||^2`` (mean reduction);
    * ``break_even/lambda_k1``: the top eigenvalue of K;
    * ``break_even/cond_k``: ``lambda_K^* / lambda_K^1``, where ``lambda_K^*`` is the smallest eigenvalue
      of K that is at least ``threshold * lambda_K^1`` (default 1e-3): the eigenvalues below are
      numerically zero (K has rank <= N - 1) or too small to estimate from N examples;
    * ``grad/norm``: ``||g||``; ``grad/mean`` and ``grad/std``: mean and (population) std of the P
      entries of g.
    """
    g = mean_gradient.double()
    spectrum = covariance_spectrum(gram)
    lambda_1 = float(spectrum[0])
    if lambda_1 > 0:  # (False for NaN too)
        lambda_star = float(spectrum[spectrum >= threshold * lambda_1].min())
        condition = lambda_star / lambda_1
    else:  # all gradients equal (or N = 1): no spread to condition
        condition = float("nan")
    return {
        "break_even/lambda_k1": lambda_1,
        "break_even/trace_k": float(gram.double().diagonal().mean() - g.square().sum()),
        "break_even/cond_k": condition,
        "grad/norm": float(g.norm()),
        "grad/mean": float(g.mean()),
        "grad/std": float(g.std(correction=0)),
    }
