"""All requested probes on one probe set, sharing one pass of per-example gradients."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from critical_periods.probes.context import full_precision
from critical_periods.probes.covariance import (
    CovarianceOptions,
    minibatch_covariance_metrics,
    per_example_covariance_metrics,
)
from critical_periods.probes.curvature import HessianOptions, hessian_metrics
from critical_periods.probes.fisher import FisherOptions, fisher_metrics
from critical_periods.probes.gradients import collect_probe_gradients
from critical_periods.probes.stiffness import StiffnessOptions, stiffness_from_gram
from critical_periods.probes.stiffness_distance import stiffness_by_distance


@dataclass
class ProbeResults:
    """metrics: name -> python float; stiffness_matrix: (C, C) mean cosine stiffness by class pair,
    when stiffness was probed; hessian_eigenvectors: the top Ritz vectors of the Hessian, when its
    eigenvalues were probed."""

    metrics: dict[str, float] = field(default_factory=dict)
    stiffness_matrix: Tensor | None = None
    # (top_k, P): where the next probe's Lanczos may start; a warm-start aid, not a result (not compared)
    hessian_eigenvectors: Tensor | None = field(default=None, compare=False)


def _minibatch_covariance(model: nn.Module, covariance: CovarianceOptions,
                          batches: tuple[Tensor, Tensor] | None, chunk_size: int | None) -> dict[str, float]:
    """The gradient covariance K from ``covariance.batches`` mini-batch gradients (checked shapes)."""
    if batches is None:
        raise ValueError("the gradient covariance needs its mini-batches (covariance_batches)")
    batch_inputs, batch_labels = batches
    expected = covariance.batches * covariance.batch_size
    if batch_inputs.shape[0] != expected:
        raise ValueError(
            f"covariance_batches holds {batch_inputs.shape[0]} examples; probes.covariance asks for "
            f"batches x batch_size = {covariance.batches} x {covariance.batch_size} = {expected}"
        )
    return minibatch_covariance_metrics(model, batch_inputs, batch_labels, covariance, chunk_size)


def _per_example_probes(model: nn.Module, inputs: Tensor, labels: Tensor, results: ProbeResults,
                        fisher: FisherOptions | None, covariance: CovarianceOptions | None,
                        stiffness: StiffnessOptions | None, chunk_size: int | None, generator: torch.Generator) -> None:
    """Fisher, the per-example covariance and stiffness from one pass of per-example gradients."""
    need_gram = stiffness is not None or (covariance is not None and covariance.per_example)
    gradients = collect_probe_gradients(
        model, inputs, labels, fisher=fisher, gram=need_gram, chunk_size=chunk_size, generator=generator
    )
    metrics = results.metrics
    if fisher is not None:
        metrics.update(fisher_metrics(gradients.fisher_squared_norms))
    if covariance is not None and covariance.per_example:
        metrics.update(per_example_covariance_metrics(gradients.gram))
    if stiffness is not None:
        averages, results.stiffness_matrix = stiffness_from_gram(gradients.gram, labels, gradients.num_classes)
        metrics.update(averages)
        if stiffness.distance_bins > 0:
            metrics.update(stiffness_by_distance(gradients.gram, inputs, stiffness.distance_bins))


def compute_probes(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    *,
    fisher: FisherOptions | None = None,
    covariance: CovarianceOptions | None = None,
    hessian: HessianOptions | None = None,
    stiffness: StiffnessOptions | None = None,
    covariance_batches: tuple[Tensor, Tensor] | None = None,
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
    hessian_start: Tensor | None = None,
) -> ProbeResults:
    """Results of the probes that are given options (``None``: not run).

    ``inputs``/``labels``: the probe set, on the model's device. ``covariance_batches``: the inputs and
    labels of the covariance's ``covariance.batches`` mini-batches of ``covariance.batch_size``
    examples, one after the other (needed when ``covariance`` is given). Everything is a mean over
    examples of the cross-entropy of the model's logits. The model's train/eval flags, parameters'
    ``.grad`` and the global RNG are untouched; randomness comes from ``generator`` only.
    ``hessian_start``: the previous probe's ``hessian_eigenvectors``, where Lanczos starts when
    ``hessian.warm_start`` is set.
    """
    # Autocast off for the whole call: Lanczos vectors and Gram products too, not only the passes.
    with full_precision(model):
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        results = ProbeResults()
        metrics = results.metrics
        if fisher is not None or stiffness is not None or (covariance is not None and covariance.per_example):
            _per_example_probes(model, inputs, labels, results, fisher, covariance, stiffness, chunk_size, generator)
        if covariance is not None:
            metrics.update(_minibatch_covariance(model, covariance, covariance_batches, chunk_size))
        if hessian is not None:
            vectors: list[Tensor] = []
            metrics.update(hessian_metrics(
                model, inputs, labels, hessian, chunk_size=chunk_size, generator=generator,
                start=hessian_start, eigenvectors=vectors,
            ))
            results.hessian_eigenvectors = vectors[0] if vectors else None
    return results
