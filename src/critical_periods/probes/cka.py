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
(O(N^2 (p + q))) is cheaper, always in float64. A representation compared many times (the initial
weights' ones, at every probe) can be kept as its :class:`CentredGram`, which halves the work of
each comparison in example space. A representation that is constant over the examples has
HSIC = 0, and its CKA with anything is NaN (0/0).

>>> x = torch.randn(32, 5, dtype=torch.float64)
>>> rotation, _ = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64))
>>> round(linear_cka(x, 3.0 * x @ rotation).item(), 12)
1.0
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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
    n, p, q = x.shape[0], x.shape[1], y.shape[1]
    if n * (p + q) < p * q + p * p + q * q:
        return gram_cka(centred_gram(x, debiased=debiased), centred_gram(y, debiased=debiased))
    _check_examples(n, debiased)
    xy, xx, yy = _feature_space(_centred(x), _centred(y), debiased)
    return xy / torch.sqrt(xx * yy)


@dataclass(frozen=True)
class CentredGram:
    """One representation's linear kernel, ready for HSIC: K = X X^T of the centred features (which
    is H K H), float64, with its diagonal zeroed (K~) for the debiased estimator, its row sums and its
    HSIC with itself (both estimators up to the factor that cancels in CKA). Memory N^2 x 8 bytes
    (2 MB at N = 512)."""

    kernel: Tensor  # (N, N)
    row_sums: Tensor  # (N,)
    self_hsic: Tensor  # ()
    debiased: bool


def centred_gram(x: Tensor, *, debiased: bool = True) -> CentredGram:
    """The :class:`CentredGram` of ``x`` (N, ...), flattened to (N, features)."""
    x = _as_features(x, "x")
    _check_examples(x.shape[0], debiased)
    x = _centred(x)
    kernel = x @ x.T
    if debiased:
        kernel.fill_diagonal_(0.0)
    row_sums = kernel.sum(1)
    return CentredGram(kernel, row_sums, _hsic(kernel, row_sums, kernel, row_sums, debiased), debiased)


def gram_cka(a: CentredGram, b: CentredGram) -> Tensor:
    """Linear CKA from two :class:`CentredGram` of the same examples and estimator; a float64 scalar."""
    if a.kernel.shape != b.kernel.shape or a.debiased != b.debiased:
        raise ValueError(
            f"CKA needs kernels of the same examples and estimator: got {a.kernel.shape[0]} and "
            f"{b.kernel.shape[0]} examples, debiased={a.debiased} and {b.debiased}"
        )
    cross = _hsic(a.kernel, a.row_sums, b.kernel, b.row_sums, a.debiased)
    return cross / torch.sqrt(a.self_hsic * b.self_hsic)


def _centred(x: Tensor) -> Tensor:
    x = x.double()  # before centring: stored representations are float16
    return x - x.mean(0)


def _check_examples(n: int, debiased: bool) -> None:
    if n < (4 if debiased else 2):
        raise ValueError(f"linear CKA needs at least {4 if debiased else 2} examples (debiased={debiased}), got {n}")


def _as_features(z: Tensor, name: str) -> Tensor:
    if z.dim() < 2:
        raise ValueError(f"{name} must be (N, features), got shape {tuple(z.shape)}")
    return z.reshape(z.shape[0], -1)


def _hsic(k: Tensor, k_rows: Tensor, l: Tensor, l_rows: Tensor, debiased: bool) -> Tensor:
    """HSIC of two centred kernels up to a factor common to all pairs (1/(N-1)^2 or 1/(N(N-3))).

    Biased: tr(K L). Debiased, with K~, L~ (zero diagonals) symmetric so that tr(K~ L~) = sum(K~ * L~)
    and 1^T K~ L~ 1 = (K~ 1) . (L~ 1):
    tr(K~ L~) + (1^T K~ 1)(1^T L~ 1) / ((N-1)(N-2)) - 2/(N-2) 1^T K~ L~ 1.
    """
    trace = (k * l).sum()
    if not debiased:
        return trace
    n = k.shape[0]
    return trace + k_rows.sum() * l_rows.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (k_rows @ l_rows)


def _feature_space(x: Tensor, y: Tensor, debiased: bool) -> tuple[Tensor, Tensor, Tensor]:
    """(HSIC(K, L), HSIC(K, K), HSIC(L, L)) up to the common factor, from p x q feature products of
    centred features, never forming an N x N matrix."""
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
    reference: Mapping[str, Tensor | CentredGram], current: Mapping[str, Tensor], *, debiased: bool = True
) -> dict[str, float]:
    """``{layer: CKA(reference[layer], current[layer])}`` for the layers in both, in ``reference``'s order.

    E.g. the representations at the initial weights vs now (``cka/<layer>/vs_init``, 1 at step 0), or
    a deficit run vs its matched clean run at the same epoch. A reference given as a
    :class:`CentredGram` is compared in example space with its own estimator.

    >>> z = {"fc": torch.randn(8, 3)}
    >>> similarity = layerwise_cka(z, {"fc": 2 * z["fc"], "other": z["fc"]}, debiased=False)
    >>> {layer: round(value, 9) for layer, value in similarity.items()}
    {'fc': 1.0}
    """

    def cka(ref: Tensor | CentredGram, now: Tensor) -> Tensor:
        if isinstance(ref, CentredGram):
            return gram_cka(ref, centred_gram(now, debiased=ref.debiased))
        return linear_cka(ref, now, debiased=debiased)

    return {layer: float(cka(reference[layer], current[layer])) for layer in reference if layer in current}
