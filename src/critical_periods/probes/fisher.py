"""Trace of the true Fisher information (Achille et al. 2019), in total and per layer."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from critical_periods.record import metric_names as names
from critical_periods.vocabulary import FisherEstimator


@dataclass
class FisherOptions:
    """How the expectation over labels y ~ p_w(y|x) is taken.

    exact: sum over all C classes weighted by p (C backward passes per chunk); otherwise
    samples: labels drawn from the model's predictive distribution per input (one backward each).
    """

    samples: int = 1
    exact: bool = False

    @property
    def estimator(self) -> FisherEstimator:
        return FisherEstimator.EXACT if self.exact else FisherEstimator.SAMPLED


def fisher_metrics(squared_norms: dict[str, Tensor]) -> dict[str, float]:
    """Trace of the true Fisher from per-example, per-layer expected squared gradient norms.

    ``tr F = (1/N) sum_i E_{y ~ p_w(y|x_i)} ||grad_w log p_w(y|x_i)||^2`` (a mean over the N examples),
    split over layers: ``tr F = sum_l tr F_l``, each layer's share ``tr F_l / tr F``. The labels come
    from the model, not the data set: with the true labels this would be the empirical Fisher.

    Keys: ``fisher/trace``, ``fisher/trace/<layer>``, ``fisher/share/<layer>``.

    >>> import torch
    >>> fisher_metrics({"0": torch.tensor([1.0, 3.0]), "2": torch.tensor([2.0, 2.0])})["fisher/share/0"]
    0.5
    """
    per_layer = {layer: float(norms.mean()) for layer, norms in squared_norms.items()}
    total = sum(per_layer.values())
    metrics = {names.FISHER_TRACE: total}
    metrics.update({names.fisher_layer_trace(layer): value for layer, value in per_layer.items()})
    for layer, value in per_layer.items():
        metrics[names.fisher_layer_share(layer)] = value / total if total > 0 else float("nan")
    return metrics
