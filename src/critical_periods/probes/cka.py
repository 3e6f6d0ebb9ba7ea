"""Linear centred kernel alignment (CKA) between two representations of the same examples.

Kornblith, Norouzi, Lee, Hinton (2019), "Similarity of Neural Representations Revisited". For
representations X (N x p) and Y (N x q) of the same N examples, with linear kernels K = X X^T and
L = Y Y^T::

    CKA(X, Y) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))

Two estimators of HSIC (both invariant to shifting the features, so features are centred first for
accuracy):

* **biased**: HSIC_0 = tr(K H L H) / (N-1)^2 with H = I - 11^T/N. For centred features the
  normalisation cancels and CKA = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F).
* **debiased** (Song et al. 2012, the form used by Nguyen, Raghu, Kornblith 2021), with K~, L~ the
  kernels with their diagonals set to zero::

      HSIC_1 = [tr(K~ L~) + (1^T K~ 1)(1^T L~ 1) / ((N-1)(N-2)) - 2/(N-2) 1^T K~ L~ 1] / (N (N-3))

  an unbiased estimator of the population HSIC; needs N >= 4 and can be slightly negative.

Where they differ: the biased estimator's bias grows with the dimension relative to N. Two
*independent* Gaussian representations have a biased CKA far above 0 while the debiased CKA stays
near 0 (measured, mean of 5 draws: N = 512, p = q = 512, this project's probe set and MLP width:
biased 0.50, debiased 0.002; N = 64, p = q = 256: 0.80 vs -0.01; N = 512, p = q = 10: 0.02 vs
0.001). So the debiased estimator is the default; the biased one is close only when N >> p, q.

Both are computed in whichever of feature space (O(N p q + N p^2 + N q^2)) or example space
(O(N^2 (p + q))) is cheaper, always in float64. A representation that is constant over the
examples has HSIC = 0, and its CKA with anything is NaN (0/0).

>>> x = torch.randn(32, 5, dtype=torch.float64)
>>> rotation, _ = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64))
>>> round(linear_cka(x, 3.0 * x @ rotation).item(), 12)
1.0
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor


def linear_cka(x: Tensor, y: Tensor, *, debiased: bool = True) -> Tensor:
    """Linear CKA between ``x`` (N, p) and ``y`` (N, q), rows = the same examples; a float64 scalar.

    Inputs of more than two dimensions are flattened to (N, -1). ``debiased=True`` uses HSIC_1 (see
    the module docstring), else the biased HSIC_0.
    """
    x, y = _as_features(x, "x"), _as_features(y, "y")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must hold the same examples: got {x.shape[0]} and {y.shape[0]} rows")
    n = x.shape[0]
    if n < (4 if debiased else 2):
        raise ValueError(f"linear_cka needs at least {4 if debiased else 2} examples (debiased={debiased}), got {n}")
    x, y = x.double(), y.double()  # before centring: stored representations are float16
    x, y = x - x.mean(0), y - y.mean(0)
    p, q = x.shape[1], y.shape[1]
    if n * (p + q) < p * q + p * p + q * q:
        xy, xx, yy = _example_space(x, y, debiased)
    else:
        xy, xx, yy = _feature_space(x, y, debiased)
    return xy / torch.sqrt(xx * yy)


def _as_features(z: Tensor, name: str) -> Tensor:
    if z.dim() < 2:
        raise ValueError(f"{name} must be (N, features), got shape {tuple(z.shape)}")
    return z.reshape(z.shape[0], -1)


def _example_space(x: Tensor, y: Tensor, debiased: bool) -> tuple[Tensor, Tensor, Tensor]:
    """(HSIC(K, L), HSIC(K, K), HSIC(L, L)) up to a common factor, from the N x N kernels."""
    k, l = x @ x.T, y @ y.T  # centred features: k, l are already H K H, H L H
    if not debiased:
        return (k * l).sum(), (k * k).sum(), (l * l).sum()
    k.fill_diagonal_(0.0)
    l.fill_diagonal_(0.0)
    n = k.shape[0]

    def hsic1(a: Tensor, b: Tensor) -> Tensor:
        # symmetric a, b: tr(a b) = sum(a * b), 1^T a b 1 = (a 1) . (b 1)
        a_rows, b_rows = a.sum(1), b.sum(1)
        return (a * b).sum() + a_rows.sum() * b_rows.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * a_rows @ b_rows

    return hsic1(k, l), hsic1(k, k), hsic1(l, l)


def _feature_space(x: Tensor, y: Tensor, debiased: bool) -> tuple[Tensor, Tensor, Tensor]:
    """The same three numbers from p x q feature products, never forming an N x N matrix."""
    xy = torch.linalg.matrix_norm(y.T @ x).square()  # ||Y^T X||_F^2 = tr(K L)
    xx = torch.linalg.matrix_norm(x.T @ x).square()
    yy = torch.linalg.matrix_norm(y.T @ y).square()
    if not debiased:
        return xy, xx, yy
    n = x.shape[0]
    x_sq, y_sq = x.square().sum(1), y.square().sum(1)  # diag(K), diag(L)

    def hsic1(ab: Tensor, a_sq: Tensor, b_sq: Tensor) -> Tensor:
        # For centred features, K1 = 0, so K~1 = -diag(K) and 1^T K~ 1 = -tr(K):
        # tr(K~L~) = tr(KL) - diag(K).diag(L); 1^T K~ L~ 1 = diag(K).diag(L).
        # Together: tr(KL) - N/(N-2) diag(K).diag(L) + tr(K) tr(L)/((N-1)(N-2)), times 1/(N(N-3)).
        return ab - n / (n - 2) * (a_sq @ b_sq) + a_sq.sum() * b_sq.sum() / ((n - 1) * (n - 2))

    return hsic1(xy, x_sq, y_sq), hsic1(xx, x_sq, x_sq), hsic1(yy, y_sq, y_sq)


def layerwise_cka(
    reference: Mapping[str, Tensor], current: Mapping[str, Tensor], *, debiased: bool = True
) -> dict[str, float]:
    """``{layer: CKA(reference[layer], current[layer])}`` for the layers in both, in ``reference``'s order.

    E.g. the representations at the initial weights vs now (``cka/<layer>/vs_init``, 1 at step 0), or
    a deficit run vs its matched clean run at the same epoch.

    >>> z = {"fc": torch.randn(8, 3)}
    >>> similarity = layerwise_cka(z, {"fc": 2 * z["fc"], "other": z["fc"]}, debiased=False)
    >>> {layer: round(value, 9) for layer, value in similarity.items()}
    {'fc': 1.0}
    """
    return {
        layer: float(linear_cka(reference[layer], current[layer], debiased=debiased))
        for layer in reference
        if layer in current
    }
