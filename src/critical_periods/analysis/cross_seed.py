"""Networks that differ only in their seed, compared layer by layer (Kornblith et al. 2019, Sec. 6.1).

For two networks A and B and a similarity index s, the layer x layer matrix S[i, j] = s(A_i, B_j)
of the representations of their layers on the same inputs. From it:

* **layer matching accuracy**: the fraction of A's layers i whose most similar layer of B is the same
  layer, argmax_j S[i, j] = i (Kornblith et al. 2019, Table 2: linear CKA nearly always, CCA-based
  indices far less often). Chance for a random argmax is 1 / L.
* **cross-seed similarity of a layer**: the diagonal S[l, l].

Similarity indices (all float64, on features centred over the examples):

* ``linear_cka``: biased linear CKA (the paper's), :func:`critical_periods.probes.cka.linear_cka`;
* ``debiased_cka``: linear CKA with the unbiased HSIC estimator (Song et al. 2012), the project's default;
* ``mean_cca``: the mean squared canonical correlation R^2_CCA = ||U_X^T U_Y||_F^2 / min(rank X, rank Y),
  with U_X an orthonormal basis of the centred X's column space (from an SVD, dropping singular
  values below the numerical rank tolerance, so a rank-deficient layer is handled). It is invariant
  to any invertible linear map of the features, which is why it fails to tell layers apart when the
  features are many compared with the examples (the paper's Sec. 3). Cost O(N p^2) per layer, once.

Per seed a, the statistics are averaged over the other seeds b (S_ba = S_ab^T for these symmetric
indices), so that each seed gives one value: the seeds, not the pairs, are the independent units
that the reproduction's bootstrap resamples (pairs that share a seed are not independent).

Memory: every compared layer's (N, features) representation of every seed, in float64 (10 seeds x
6 layers x 512 features x 1000 examples: 250 MB); time dominated by the L^2 CKAs per pair.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

Representations = Mapping[str, Tensor]  # {layer: (N, features)}, in the network's order


def _centred(x: Tensor) -> Tensor:
    x = x.reshape(x.shape[0], -1).double()
    return x - x.mean(0)


def orthonormal_basis(x: Tensor) -> Tensor:
    """An orthonormal basis (N, rank) of the column space of the centred ``x`` (N, features)."""
    u, s, _ = torch.linalg.svd(_centred(x), full_matrices=False)
    if s.numel() == 0 or s[0] == 0:
        return u[:, :0]
    tolerance = s[0] * max(u.shape[0], x.reshape(x.shape[0], -1).shape[1]) * torch.finfo(torch.float64).eps
    return u[:, s > tolerance]


def mean_cca(x: Tensor, y: Tensor) -> float:
    """R^2_CCA: the mean of the squared canonical correlations of ``x`` and ``y`` (N, features)."""
    return _mean_cca_of_bases(orthonormal_basis(x), orthonormal_basis(y))


def _mean_cca_of_bases(qx: Tensor, qy: Tensor) -> float:
    rank = min(qx.shape[1], qy.shape[1])
    if rank == 0:
        return float("nan")
    return float(torch.linalg.matrix_norm(qx.T @ qy).square() / rank)


SIMILARITIES = ("linear_cka", "debiased_cka", "mean_cca")


@dataclass(frozen=True)
class Prepared:
    """What every comparison of one representation reuses: its centred float64 features, their
    squared row norms (diag K), its self-HSIC under both estimators, and its orthonormal basis."""

    features: Tensor  # (N, p), centred
    row_sq: Tensor  # (N,)
    self_biased: Tensor
    self_debiased: Tensor
    basis: Tensor  # (N, rank)


def _hsic1(cross: Tensor, a_sq: Tensor, b_sq: Tensor, n: int) -> Tensor:
    """The debiased HSIC (up to 1/(N(N-3))) of centred features from ||B^T A||_F^2 and the diagonals
    of the two kernels (the derivation is in critical_periods.probes.cka._feature_space)."""
    return cross - n / (n - 2) * (a_sq @ b_sq) + a_sq.sum() * b_sq.sum() / ((n - 1) * (n - 2))


def prepare(x: Tensor) -> Prepared:
    """:class:`Prepared` of ``x`` (N, ...), flattened to (N, features); N >= 4."""
    z = _centred(x)
    n = z.shape[0]
    if n < 4:
        raise ValueError(f"cross-seed similarity needs at least 4 examples, got {n}")
    gram = torch.linalg.matrix_norm(z.T @ z).square() if z.shape[1] <= n else torch.linalg.matrix_norm(z @ z.T).square()
    row_sq = z.square().sum(1)
    return Prepared(z, row_sq, gram, _hsic1(gram, row_sq, row_sq, n), orthonormal_basis(x))


def similarities(a: Prepared, b: Prepared) -> dict[str, float]:
    """``{similarity index: value}`` for two prepared representations of the same examples; the
    cross product B^T A is formed once for both CKAs."""
    n = a.features.shape[0]
    cross = torch.linalg.matrix_norm(b.features.T @ a.features).square()
    rank = min(a.basis.shape[1], b.basis.shape[1])
    return {
        "linear_cka": float(cross / torch.sqrt(a.self_biased * b.self_biased)),
        "debiased_cka": float(_hsic1(cross, a.row_sq, b.row_sq, n) / torch.sqrt(a.self_debiased * b.self_debiased)),
        "mean_cca": _mean_cca_of_bases(a.basis, b.basis) if rank else float("nan"),
    }


def similarity_matrices(a: Mapping[str, Prepared], b: Mapping[str, Prepared], layers: Sequence[str]) -> dict[str, np.ndarray]:
    """``{index: S}`` with S[i, j] = index(a[layers[i]], b[layers[j]]), L x L float64 arrays."""
    values = [[similarities(a[i], b[j]) for j in layers] for i in layers]
    return {name: np.array([[cell[name] for cell in row] for row in values]) for name in SIMILARITIES}


def matching_accuracy(matrix: np.ndarray) -> float:
    """The fraction of rows i whose largest entry is in column i (NaN entries never win; a tie
    counts as a match only if column i is the first of the tied maxima, as numpy's argmax).

    >>> matching_accuracy(np.array([[0.9, 0.1], [0.8, 0.7]]))
    0.5
    """
    filled = np.where(np.isnan(matrix), -np.inf, matrix)
    return float(np.mean(np.argmax(filled, axis=1) == np.arange(len(matrix))))


def derangement(size: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation of ``range(size)`` with no fixed point (size >= 2)."""
    if size < 2:
        raise ValueError(f"a derangement needs at least 2 elements, got {size}")
    while True:
        order = rng.permutation(size)
        if not np.any(order == np.arange(size)):
            return order


@dataclass(frozen=True)
class CrossSeed:
    """The similarity matrices of every pair of seeds (a < b) for one architecture and index."""

    layers: list[str]
    seeds: list[int]
    matrices: dict[tuple[int, int], np.ndarray]

    def matrix(self, a: int, b: int) -> np.ndarray:
        """S_ab (rows: a's layers); S_ba = S_ab^T."""
        return self.matrices[(a, b)] if a < b else self.matrices[(b, a)].T

    def per_seed(self, statistic: Callable[[np.ndarray], float]) -> dict[int, float]:
        """``{a: mean over b != a of statistic(S_ab)}``."""
        return {a: float(np.mean([statistic(self.matrix(a, b)) for b in self.seeds if b != a])) for a in self.seeds}

    def matching(self) -> dict[int, float]:
        return self.per_seed(matching_accuracy)

    def diagonal(self) -> dict[int, np.ndarray]:
        """``{a: per layer, the mean over b != a of S_ab[l, l]}``."""
        return {a: np.mean([np.diag(self.matrix(a, b)) for b in self.seeds if b != a], axis=0) for a in self.seeds}

    def mean_matrix(self) -> np.ndarray:
        """The mean over all ordered pairs of S_ab (the figure's layer x layer panel)."""
        return np.mean([self.matrix(a, b) for a in self.seeds for b in self.seeds if a != b], axis=0)

    def deranged(self, random_state: int) -> CrossSeed:
        """The control: B's layers relabelled by a derangement per pair (seeded by ``random_state``
        and the pair), so no layer of B keeps its own label: matching is absent by construction."""
        out = {}
        for a, b in self.matrices:
            order = derangement(len(self.layers), np.random.default_rng([random_state, a, b]))
            out[(a, b)] = self.matrices[(a, b)][:, order]
        return CrossSeed(self.layers, self.seeds, out)


def cross_seed(representations: Mapping[int, Representations], layers: Sequence[str] | None = None) -> dict[str, CrossSeed]:
    """``{index: CrossSeed}`` over every pair of the seeds in ``representations`` (``{seed: {layer:
    (N, features)}}``, all on the same inputs); ``layers``: the ones compared, default all of the
    first seed's."""
    seeds = sorted(representations)
    if len(seeds) < 2:
        raise ValueError(f"cross-seed similarity needs at least 2 seeds, got {seeds}")
    layers = list(layers if layers is not None else representations[seeds[0]])
    n = {len(representations[s][layer]) for s in seeds for layer in layers}
    if len(n) != 1:
        raise ValueError(f"every seed's representations must hold the same examples, got row counts {sorted(n)}")
    prepared = {s: {layer: prepare(representations[s][layer]) for layer in layers} for s in seeds}
    matrices: dict[str, dict[tuple[int, int], np.ndarray]] = {name: {} for name in SIMILARITIES}
    for i, a in enumerate(seeds):
        for b in seeds[i + 1:]:
            for name, matrix in similarity_matrices(prepared[a], prepared[b], layers).items():
                matrices[name][(a, b)] = matrix
    return {name: CrossSeed(layers, seeds, pairs) for name, pairs in matrices.items()}


def least_squares_slope(values: Sequence[float]) -> float:
    """The least-squares slope of ``values`` against their index 1, 2, ...

    >>> round(least_squares_slope([3.0, 2.0, 1.0]), 12)
    -1.0
    """
    y = np.asarray(values, dtype=float)
    return float(np.polyfit(np.arange(1, len(y) + 1), y, 1)[0])


# -- from run folders ---------------------------------------------------------------------------------


def common_inputs(datamodule, size: int) -> Tensor:
    """The first ``size`` test examples: the same raw examples for every seed (the data set's test
    split does not depend on the seed), each normalised by that run's own training statistics, i.e.
    as that network sees them. The training-time probe set is drawn per seed, so it cannot be used."""
    if size > len(datamodule.x_test):
        raise ValueError(f"{size} common inputs asked for, the test set has {len(datamodule.x_test)}")
    return datamodule.x_test[:size]


def final_representations(run_dir: Path | str, size: int) -> dict[str, Tensor]:
    """Each parametrised layer's output of the run's final network (``checkpoints/last.ckpt``) on
    :func:`common_inputs`, in float64, in the network's layer order."""
    from critical_periods.probes.representations import layer_representations
    from critical_periods.reload import load_run

    model, datamodule, _ = load_run(run_dir)
    with torch.no_grad():
        reps = layer_representations(model.double(), common_inputs(datamodule, size).double())
    return {name: z.double() for name, z in reps.items()}


def hidden_layers(representations: Representations) -> list[str]:
    """The layers but the last (the logits), which the paper leaves out of the matching."""
    return list(representations)[:-1]
