"""All requested probes on one probe set, sharing one pass of per-example gradients."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from critical_periods.probes.covariance import CovarianceOptions, gradient_covariance_metrics
from critical_periods.probes.curvature import HessianOptions, hessian_metrics
from critical_periods.probes.fisher import FisherOptions, fisher_metrics
from critical_periods.probes.gradients import collect_probe_gradients


def compute_probes(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    *,
    fisher: FisherOptions | None = None,
    covariance: CovarianceOptions | None = None,
    hessian: HessianOptions | None = None,
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Metrics of the probes that are given options (``None``: not run), as python floats.

    ``inputs``/``labels``: the probe set, on the model's device. Everything is a mean over the probe
    examples of the cross-entropy of the model's logits. The model's train/eval flags, parameters'
    ``.grad`` and the global RNG are untouched; randomness comes from ``generator`` only.
    """
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    metrics: dict[str, float] = {}
    if fisher is not None or covariance is not None:
        gradients = collect_probe_gradients(
            model,
            inputs,
            labels,
            fisher=fisher is not None,
            fisher_exact=fisher.exact if fisher else False,
            fisher_samples=fisher.samples if fisher else 1,
            covariance=covariance is not None,
            chunk_size=chunk_size,
            generator=generator,
        )
        if fisher is not None:
            metrics.update(fisher_metrics(gradients.fisher_squared_norms))
        if covariance is not None:
            metrics.update(
                gradient_covariance_metrics(gradients.gram, gradients.mean_gradient, covariance.threshold)
            )
    if hessian is not None:
        metrics.update(
            hessian_metrics(model, inputs, labels, hessian, chunk_size=chunk_size, generator=generator)
        )
    return metrics
