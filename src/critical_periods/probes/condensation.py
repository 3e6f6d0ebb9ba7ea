"""Condensation (Xu et al.; Luo, Xu, Ma, Zhang 2021): do the first hidden layer's neurons point the
same way in input space?

Each hidden neuron k of the first Linear layer has an input weight vector with its bias appended,
``v_k = [W_k, b_k]`` (as the papers draw them: the neuron's direction in the augmented input space
``[x, 1]``). With ``c_kl = <v_k, v_l> / (|v_k| |v_l|)`` (0 when either vector is 0):

* ``condensation/aligned_fraction``: the fraction of unordered pairs k < l with ``|c_kl| > threshold``
  (default 0.9); 1 when all neurons are (anti)parallel, 0 when they are pairwise orthogonal;
* ``condensation/clusters``: the number of direction clusters, i.e. the connected components of the
  graph on the neurons whose edges are the pairs with ``|c_kl| > threshold`` (single linkage; a
  neuron aligned with no other is a cluster of its own, so m orthogonal neurons give m clusters);
* ``condensation/mean_abs_cos``: the mean of ``|c_kl|`` over the pairs k < l.

|cos| rather than cos: with ReLU, a neuron and one pointing the opposite way are the two sides of
one condensed direction (the papers' figures show both). Cost per call: one (m, d+1) x (d+1, m)
product, O(m^2 (d+1)) time and O(m^2) memory for m neurons and d inputs; no data, no gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse.csgraph import connected_components
from torch import Tensor, nn

from critical_periods.record import metric_names as names


@dataclass(frozen=True)
class CondensationOptions:
    """threshold: |cosine| above which two neurons count as one direction (config:
    ``probes.condensation.threshold``)."""

    threshold: float = 0.9

    def __post_init__(self) -> None:
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) or not 0 < self.threshold < 1:
            raise ValueError(
                f"probes.condensation.threshold={self.threshold!r} is not allowed: it must be a number in (0, 1)"
            )


def first_linear(model: nn.Module) -> nn.Linear:
    """The first ``nn.Linear`` in ``model.modules()`` order (the MLP's ``features.fc1``)."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            return module
    raise ValueError(
        f"the condensation probe needs a model with a Linear layer (e.g. model=mlp), but {type(model).__name__} has none"
    )


def neuron_vectors(layer: nn.Linear) -> Tensor:
    """(m, d + 1) input weights of the layer's m neurons with the bias appended (no column without bias)."""
    weight = layer.weight.detach().flatten(1)
    if layer.bias is None:
        return weight
    return torch.cat([weight, layer.bias.detach()[:, None]], dim=1)


def abs_cosines(vectors: Tensor) -> Tensor:
    """(m, m) |cos| between the rows of ``vectors`` in float64; 0 where a row is zero."""
    vectors = vectors.double()
    norms = vectors.norm(dim=1)
    unit = vectors / torch.where(norms > 0, norms, 1.0)[:, None]
    return (unit @ unit.T).abs()


def condensation_from_vectors(vectors: Tensor, threshold: float = 0.9) -> dict[str, float]:
    """The three statistics of the module docstring for the rows of ``vectors`` (m >= 2 rows).

    >>> condensation_from_vectors(torch.tensor([[1.0, 0.0], [-2.0, 0.0], [0.0, 1.0]]))
    {'condensation/aligned_fraction': 0.3333333333333333, 'condensation/clusters': 2.0, 'condensation/mean_abs_cos': 0.3333333333333333}
    """
    m = vectors.shape[0]
    if m < 2:
        raise ValueError(f"the condensation probe needs at least 2 neurons in the first layer, but it has {m}")
    cos = abs_cosines(vectors)
    upper = torch.triu(torch.ones(m, m, dtype=torch.bool, device=cos.device), diagonal=1)
    pairs = cos[upper]
    linked = (cos > threshold) & ~torch.eye(m, dtype=torch.bool, device=cos.device)
    clusters, _ = connected_components(linked.cpu().numpy().astype(np.int8), directed=False)
    return {
        names.CONDENSATION_ALIGNED_FRACTION: float((pairs > threshold).double().mean()),
        names.CONDENSATION_CLUSTERS: float(clusters),
        names.CONDENSATION_MEAN_ABS_COS: float(pairs.mean()),
    }


def condensation_metrics(model: nn.Module, options: CondensationOptions) -> dict[str, float]:
    """:func:`condensation_from_vectors` of the first Linear layer's neurons of ``model``."""
    return condensation_from_vectors(neuron_vectors(first_linear(model)), options.threshold)
