"""Stiffness (Fort, Nowak, Jastrzebski, Narayanan 2019): do two examples' gradients pull the same way?"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from critical_periods.record import metric_names as names


@dataclass
class StiffnessOptions:
    """matrix_every_n_epochs: save the class x class cosine matrix at the start and at the end of every
    N-th epoch (0: never; the four averages are logged at every probe regardless).
    distance_bins: also log the mean cos stiffness in that many equal-count bins of input distance
    and the dynamical critical length (:mod:`critical_periods.probes.stiffness_distance`); 0: off."""

    matrix_every_n_epochs: int = 1
    distance_bins: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.matrix_every_n_epochs, int) or self.matrix_every_n_epochs < 0:
            raise ValueError(
                f"probes.stiffness.matrix_every_n_epochs={self.matrix_every_n_epochs!r} is not allowed: "
                "it must be a whole number >= 0 (0: never save the matrix)"
            )
        if isinstance(self.distance_bins, bool) or not isinstance(self.distance_bins, int) or self.distance_bins < 0:
            raise ValueError(
                f"probes.stiffness.distance_bins={self.distance_bins!r} is not allowed: "
                "it must be a whole number >= 0 (0: no stiffness by input distance)"
            )


def stiffness_from_gram(gram: Tensor, labels: Tensor, num_classes: int) -> tuple[dict[str, float], Tensor]:
    """Cosine and sign stiffness from the (N, N) Gram matrix ``G_ij = <g_i, g_j>`` of true-label gradients.

    For examples i != j: ``cos_ij = G_ij / sqrt(G_ii G_jj)`` (0 if either gradient is 0) and
    ``sign_ij = sign(G_ij)``. Returns

    * ``stiffness/cos_same_class``, ``stiffness/sign_same_class``: the mean over all ordered pairs
      i != j with ``y_i = y_j``; ``stiffness/cos_diff_class``, ``stiffness/sign_diff_class``: over the
      pairs with ``y_i != y_j`` (NaN if there are none);
    * the (C, C) matrix ``M_cd`` = mean of cos_ij over i of class c, j of class d, i != j (so its
      diagonal holds the same-class pairs; NaN where a class has too few examples). Symmetric.

    >>> g = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, -1.0]])  # examples 0, 1: class 0; 2: class 1
    >>> averages, matrix = stiffness_from_gram(g @ g.T, torch.tensor([0, 0, 1]), num_classes=2)
    >>> averages["stiffness/cos_same_class"], averages["stiffness/cos_diff_class"]
    (1.0, 0.0)
    >>> matrix.tolist()
    [[1.0, 0.0], [0.0, nan]]
    """
    gram = gram.double()
    norms = gram.diagonal().clamp_min(0).sqrt()
    scale = torch.outer(norms, norms)
    cos = torch.where(scale > 0, gram / torch.where(scale > 0, scale, 1.0), 0.0)
    sign = torch.sign(gram)
    labels = labels.to(gram.device)
    off_diagonal = ~torch.eye(len(labels), dtype=torch.bool, device=gram.device)
    same = (labels[:, None] == labels[None, :]) & off_diagonal
    different = labels[:, None] != labels[None, :]
    averages = {
        names.STIFFNESS_COS_SAME: _mean(cos[same]),
        names.STIFFNESS_COS_DIFF: _mean(cos[different]),
        names.STIFFNESS_SIGN_SAME: _mean(sign[same]),
        names.STIFFNESS_SIGN_DIFF: _mean(sign[different]),
    }
    one_hot = torch.nn.functional.one_hot(labels, num_classes).double()  # (N, C)
    cos_sums = one_hot.T @ (cos * off_diagonal) @ one_hot
    pair_counts = one_hot.T @ off_diagonal.double() @ one_hot
    matrix = cos_sums / pair_counts  # 0/0 = NaN where a class pair has no pairs
    return averages, matrix


def _mean(values: Tensor) -> float:
    return float(values.mean()) if values.numel() else float("nan")
