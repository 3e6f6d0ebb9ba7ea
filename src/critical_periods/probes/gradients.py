"""One pass over the probe set that yields the per-example gradient statistics several probes share."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from critical_periods.probes.context import probe_mode
from critical_periods.probes.fisher import FisherOptions
from critical_periods.probes.per_example import (
    LayerGradients,
    Method,
    PerExampleGradients,
    concatenate,
)
from critical_periods.stopping import raise_if_stop_requested


@dataclass
class ProbeGradients:
    """Per-example gradient statistics of the cross-entropy on N probe examples (float64).

    fisher_squared_norms: layer -> (N,), ``E_{y ~ p_w(y|x_i)} ||grad_layer log p_w(y|x_i)||^2`` per example,
        either exact (sum over classes weighted by p) or the mean over the sampled labels.
    gram: (N, N), ``<g_i, g_j>`` with ``g_i = grad_w CE(f(x_i), y_i)`` for the true labels.
    num_classes: C, the width of the model's logits.
    """

    fisher_squared_norms: dict[str, Tensor] | None
    gram: Tensor | None
    num_classes: int


def sample_labels(probabilities: Tensor, uniforms: Tensor) -> Tensor:
    """Labels ``y ~ Categorical(p)`` by inverse CDF: (n, C) probabilities, (n, m) uniforms -> (n, m).

    The uniforms are drawn for the whole probe set up front, so the labels do not depend on chunking.
    """
    cdf = probabilities.cumsum(1)
    labels = torch.searchsorted(cdf, uniforms.to(cdf), right=True)
    return labels.clamp_(max=probabilities.shape[1] - 1)  # cdf[-1] may round to just below 1


def _loss_direction(probabilities: Tensor, labels: Tensor, dtype: torch.dtype) -> Tensor:
    # d CE(z, y) / dz = softmax(z) - e_y
    return (probabilities - F.one_hot(labels, probabilities.shape[1]).to(probabilities)).to(dtype)


def _fisher_labels(
    probabilities: Tensor, sampled: Tensor | None
) -> Iterator[tuple[Tensor, Tensor]]:
    """(labels (n,), weights (n,)) whose weighted sum of squared norms is E_y ||grad log p(y|x)||^2:
    every class weighted by its probability (exact), or each sampled label weighted by 1/m."""
    n, classes = probabilities.shape
    if sampled is None:
        for c in range(classes):
            yield torch.full((n,), c, dtype=torch.long, device=probabilities.device), probabilities[:, c]
    else:
        weight = torch.full_like(probabilities[:, 0], 1.0 / sampled.shape[1])
        for s in range(sampled.shape[1]):
            yield sampled[:, s], weight


def collect_probe_gradients(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor | None = None,
    *,
    fisher: FisherOptions | None = None,
    gram: bool = False,
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
    method: Method = "auto",
) -> ProbeGradients:
    """Per-example gradients of cross-entropy, for model-sampled labels (Fisher) and true labels (Gram).

    The model must return logits (N, C). It runs in eval mode with autograd on, and only
    ``torch.autograd.grad`` is used: parameters' ``.grad``, the global RNG and the modules' train/eval
    flags are left as they were. ``fisher``: ``None`` skips the Fisher norms; ``exact`` takes the
    expectation over all C classes (C backward passes per chunk), otherwise ``samples`` labels per input
    are drawn from ``generator``. ``gram``: also the (N, N) Gram matrix of the true-label gradients.
    ``chunk_size`` bounds memory; the result does not depend on it. Memory kept across chunks for the
    Gram matrix: N (in + out) per Linear layer, N P_layer per other layer. A pending stop request
    (:mod:`critical_periods.stopping`) is honoured between chunks.
    """
    n = inputs.shape[0]
    chunk_size = chunk_size or n
    if gram and labels is None:
        raise ValueError("the Gram matrix of true-label gradients needs the true labels")
    if fisher is not None and not fisher.exact:
        if fisher.samples < 1:
            raise ValueError(
                f"probes.fisher.samples={fisher.samples!r} is not allowed: it must be at least 1 "
                "(or set probes.fisher.exact=true)"
            )
        if generator is None:
            raise ValueError("sampling labels from the model needs a torch.Generator")
        uniforms = torch.rand(
            n, fisher.samples, generator=generator, dtype=torch.float64, device=generator.device
        ).to(inputs.device)

    fisher_norms: dict[str, list[Tensor]] = {}
    true_label_blocks: dict[str, list[LayerGradients]] = {}
    with probe_mode(model):
        for start in range(0, n, chunk_size):
            raise_if_stop_requested()
            chunk = slice(start, min(start + chunk_size, n))
            per_example = PerExampleGradients(model, inputs[chunk], method)
            logits = per_example.logits
            probabilities = logits.double().softmax(1)
            if fisher is not None:
                sampled = None if fisher.exact else sample_labels(probabilities, uniforms[chunk])
                expected: dict[str, Tensor] = {}
                for labels_y, weight in _fisher_labels(probabilities, sampled):
                    direction = _loss_direction(probabilities, labels_y, logits.dtype)
                    for layer, block in per_example(direction).items():
                        expected[layer] = expected.get(layer, 0) + weight * block.squared_norms()
                for layer, norms in expected.items():
                    fisher_norms.setdefault(layer, []).append(norms)
            if gram:
                direction = _loss_direction(probabilities, labels[chunk].to(logits.device), logits.dtype)
                for layer, block in per_example(direction).items():
                    true_label_blocks.setdefault(layer, []).append(block)

    gram_matrix = None
    if gram:
        gram_matrix = sum(concatenate(blocks).gram() for blocks in true_label_blocks.values())
    return ProbeGradients(
        fisher_squared_norms={layer: torch.cat(v) for layer, v in fisher_norms.items()}
        if fisher is not None else None,
        gram=gram_matrix,
        num_classes=probabilities.shape[1],
    )
