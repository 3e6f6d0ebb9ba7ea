"""One pass over the probe set that yields the per-example gradient statistics several probes share."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from critical_periods.vocabulary import FisherEstimator
from critical_periods.probes.context import probe_mode
from critical_periods.probes.fisher import FisherOptions
from critical_periods.probes.per_example import (
    FactoredGradients,
    LayerGradients,
    Method,
    PerExampleGradients,
    concatenate,
    cross_gram,
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


def _fisher_uniforms(n: int, fisher: FisherOptions | None, generator: torch.Generator | None, device) -> Tensor | None:
    """The uniforms the sampled Fisher draws its labels from, for the whole probe set at once (so the
    labels do not depend on chunking); ``None`` for the exact expectation or no Fisher."""
    if fisher is None or fisher.estimator is not FisherEstimator.SAMPLED:
        return None
    if fisher.samples < 1:
        raise ValueError(
            f"probes.fisher.samples={fisher.samples!r} is not allowed: it must be at least 1 "
            "(or set probes.fisher.exact=true)"
        )
    if generator is None:
        raise ValueError("sampling labels from the model needs a torch.Generator")
    return torch.rand(n, fisher.samples, generator=generator, dtype=torch.float64, device=generator.device).to(device)


def _expected_squared_norms(per_example: PerExampleGradients, probabilities: Tensor,
                            uniforms: Tensor | None) -> dict[str, Tensor]:
    """Per layer, E_y ||grad_layer log p(y|x)||^2 of each example of the chunk (exact, or over the
    labels sampled with ``uniforms``)."""
    sampled = None if uniforms is None else sample_labels(probabilities, uniforms)
    expected: dict[str, Tensor] = {}
    for labels_y, weight in _fisher_labels(probabilities, sampled):
        direction = _loss_direction(probabilities, labels_y, per_example.logits.dtype)
        for layer, block in per_example(direction).items():
            expected[layer] = expected.get(layer, 0) + weight * block.squared_norms()
    return expected


class _GramAccumulator:
    """The (N, N) Gram matrix of true-label per-example gradients, chunk by chunk.

    Linear layers' factored gradients (N (in + out) floats) are kept whole and multiplied at the end;
    the other layers' blocks are accumulated chunk a against every later chunk b, whose gradients
    are recomputed: with c chunks, c (c - 1) / 2 extra forward/backward passes (none with one chunk),
    and at most two chunks' per-example gradients of one layer (2 chunk P_layer floats; for the
    torch.func layers, of all of them at once) and two chunks' activations alive at once.
    """

    def __init__(self, model: nn.Module, inputs: Tensor, labels: Tensor, chunks: list[slice], method: Method) -> None:
        self.model, self.inputs, self.labels, self.chunks, self.method = model, inputs, labels, chunks, method
        n = inputs.shape[0]
        self.matrix = torch.zeros(n, n, dtype=torch.float64, device=inputs.device)
        self.factored: dict[str, list[LayerGradients]] = {}
        self.blockwise: set[str] | None = None

    def blocks(self, index: int, per_example: PerExampleGradients) -> dict[str, LayerGradients]:
        return _true_label_blocks(per_example, self.labels[self.chunks[index]])

    def add(self, index: int, blocks: dict[str, LayerGradients]) -> None:
        """Chunk ``index``'s share, from its blocks (drop the chunk's graph first: later chunks are
        recomputed here)."""
        chunk = self.chunks[index]
        if self.blockwise is None:
            self.blockwise = {layer for layer, b in blocks.items() if not isinstance(b, FactoredGradients)}
        for layer, block in blocks.items():
            if layer not in self.blockwise:
                self.factored.setdefault(layer, []).append(block)
        dense = {layer: blocks[layer] for layer in self.blockwise if layer in blocks}
        if not dense:
            return
        self.matrix[chunk, chunk] += sum(block.gram() for block in dense.values())
        for later in self.chunks[index + 1 :]:  # recomputed, so no other chunk's gradients are kept
            raise_if_stop_requested()
            other = _true_label_blocks(PerExampleGradients(self.model, self.inputs[later], self.method), self.labels[later])
            cross = sum(cross_gram(dense[layer], other[layer]) for layer in dense if layer in other)
            self.matrix[chunk, later] += cross
            self.matrix[later, chunk] += cross.T

    def finish(self) -> Tensor:
        for layer_blocks in self.factored.values():
            self.matrix += concatenate(layer_blocks).gram()
        return self.matrix


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
    are drawn from ``generator``. ``gram``: also the (N, N) Gram matrix of the true-label gradients
    (cost and memory: :class:`_GramAccumulator`; never N P floats). ``chunk_size`` bounds memory; the
    result does not depend on it. A pending stop request is honoured between chunks.
    """
    n = inputs.shape[0]
    chunk_size = chunk_size or n
    if gram and labels is None:
        raise ValueError("the Gram matrix of true-label gradients needs the true labels")
    uniforms = _fisher_uniforms(n, fisher, generator, inputs.device)
    chunks = [slice(start, min(start + chunk_size, n)) for start in range(0, n, chunk_size)]
    fisher_norms: dict[str, list[Tensor]] = {}
    gram_matrix = _GramAccumulator(model, inputs, labels, chunks, method) if gram else None
    with probe_mode(model):
        for index, chunk in enumerate(chunks):
            raise_if_stop_requested()
            per_example = PerExampleGradients(model, inputs[chunk], method)
            probabilities = per_example.logits.double().softmax(1)
            num_classes = probabilities.shape[1]
            if fisher is not None:
                chunk_uniforms = None if uniforms is None else uniforms[chunk]
                for layer, norms in _expected_squared_norms(per_example, probabilities, chunk_uniforms).items():
                    fisher_norms.setdefault(layer, []).append(norms)
            if gram_matrix is not None:
                blocks = gram_matrix.blocks(index, per_example)
                del per_example  # its graph: the blocks hold what the Gram matrix needs
                gram_matrix.add(index, blocks)
    return ProbeGradients(
        fisher_squared_norms={layer: torch.cat(v) for layer, v in fisher_norms.items()} if fisher is not None else None,
        gram=gram_matrix.finish() if gram_matrix is not None else None,
        num_classes=num_classes,
    )


def _true_label_blocks(per_example: PerExampleGradients, labels: Tensor) -> dict[str, LayerGradients]:
    """Per-layer gradients of each example's cross-entropy with its true label."""
    logits = per_example.logits
    probabilities = logits.double().softmax(1)
    return per_example(_loss_direction(probabilities, labels.to(logits.device), logits.dtype))
