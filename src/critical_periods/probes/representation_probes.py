"""The representation probes the callback schedules (CKA vs the initial weights, frequency principle),
and the offline comparisons of saved representations (deficit run vs clean run, layer x layer).

One forward pass on the probe set gives every parametrised layer's output and the logits; from them:

* ``cka/<layer>/vs_init``: debiased linear CKA (:mod:`critical_periods.probes.cka`) of the layer's
  output now vs at the initial weights, 1 at step 0. The initial representations are kept for the
  whole run as their N x N centred kernels (:class:`~critical_periods.probes.cka.CentredGram`, 2 MB
  per layer at N = 512; each probe then costs one N x N x features product per layer), and saved
  as ``epoch_0000.npz`` so a resumed run can rebuild them.
* ``frequency/error_low``, ``frequency/error_high``: :mod:`critical_periods.probes.frequency` on the
  probe inputs, one-hot labels and softmax outputs. O(N^2) memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from critical_periods.record.metric_names import cka_vs_init
from critical_periods.probes.cka import CentredGram, centred_gram, gram_cka, layerwise_cka
from critical_periods.probes.frequency import frequency_metrics, probe_filter
from critical_periods.probes.representations import (
    forward_with_representations,
    layer_representations,
    load_probe_digest,
    load_representations,
    save_representations,
)

_KEY = "probes.representation"


@dataclass(frozen=True)
class RepresentationOptions:
    """What the representation probes compute (config: ``probes.representation``).

    Args:
        cka: log ``cka/<layer>/vs_init`` (needs the initial representations, see the module docstring).
        frequency: log ``frequency/error_low`` and ``frequency/error_high``.
        delta: the frequency filter's Gaussian width in input space; ``None``: 0.3 x the median
            pairwise distance of the probe inputs (:func:`critical_periods.probes.frequency.default_delta`).
        save_every_n_epochs: save the probe set's representations (float16 ``.npz``) after every
            n-th epoch, and at the start; 0: never (except ``epoch_0000`` when ``cka`` needs it).
    """

    cka: bool = True
    frequency: bool = True
    delta: float | None = None
    save_every_n_epochs: int = 0

    def __post_init__(self) -> None:
        if self.delta is not None and not (isinstance(self.delta, (int, float)) and self.delta > 0):
            raise ValueError(
                f"{_KEY}.delta={self.delta!r} is not allowed: it must be a number > 0, or null for the default"
            )
        if not isinstance(self.save_every_n_epochs, int) or self.save_every_n_epochs < 0:
            raise ValueError(
                f"{_KEY}.save_every_n_epochs={self.save_every_n_epochs!r} is not allowed: "
                "it must be a whole number >= 0 (0: never)"
            )

    def saves_at(self, epochs_trained: int) -> bool:
        """Whether the representations after ``epochs_trained`` epochs are to be saved (0: the start)."""
        if epochs_trained == 0:
            return self.cka or self.save_every_n_epochs > 0
        return self.save_every_n_epochs > 0 and epochs_trained % self.save_every_n_epochs == 0


def representation_metrics(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    options: RepresentationOptions,
    initial: Mapping[str, Tensor | CentredGram] | None,
    chunk_size: int | None = None,
    low_pass: Tensor | None = None,
) -> tuple[dict[str, float], dict[str, Tensor]]:
    """(metrics, representations) of ``model`` on the probe set ``inputs``/``labels``.

    ``initial``: the representations at the initial weights, or their kernels (:class:`RepresentationProbe`
    keeps them over a run). ``None`` means this call *is* at the initial weights: CKA is taken against
    the representations themselves (1, or NaN for a layer constant over the probe set).
    ``low_pass``: the frequency filter of ``inputs`` (:func:`~critical_periods.probes.frequency.probe_filter`
    with ``options.delta``) if the caller keeps it; ``None``: computed here.

    Eval mode, no autograd, flags restored, no RNG drawn (see
    :func:`critical_periods.probes.representations.layer_representations`).
    """
    representations, logits = forward_with_representations(model, inputs, chunk_size)
    metrics: dict[str, float] = {}
    if options.cka:
        reference = representations if initial is None else initial
        similarity = layerwise_cka(reference, representations)
        metrics.update({cka_vs_init(layer): value for layer, value in similarity.items()})
    if options.frequency:
        weights = probe_filter(inputs, options.delta) if low_pass is None else low_pass
        metrics.update(frequency_metrics(labels, logits, weights))
    return metrics, representations


class RepresentationProbe:
    """What a training callback keeps for the representation probes over one run: the probe set, the
    initial representations' kernels, the frequency filter of the probe inputs and the run folder
    the saves go to. The initial representations are saved in float32 (3.2 MB for the default MLP
    at N = 512) and the kernels are built from those same float32 values, so CKA vs init is 1 at
    step 0 and a resumed run, which reloads them, logs exactly what an uninterrupted run would.

    The callback calls :meth:`start` once at train start (after any checkpoint is restored),
    :meth:`probe` whenever it probes, and :meth:`save` at epoch ends (which writes the last probed
    representations if the options select that epoch).
    """

    def __init__(
        self,
        options: RepresentationOptions,
        run_dir: Path | str,
        inputs: Tensor,
        labels: Tensor,
        chunk_size: int | None = None,
    ) -> None:
        self.options = options
        self.run_dir = Path(run_dir)
        self.inputs, self.labels, self.chunk_size = inputs, labels, chunk_size
        self.initial: dict[str, CentredGram] | None = None
        self._low_pass = probe_filter(inputs, options.delta) if options.frequency else None
        self._last: dict[str, Tensor] | None = None  # the last probe's representations, until saved

    def start(self, model: nn.Module, *, resumed: bool) -> None:
        """Record the initial representations (saved as ``epoch_0000``), or reload them when ``resumed``."""
        if resumed:
            if self.options.cka:
                stored = load_representations(self.run_dir, 0)
                self.initial = {k: centred_gram(v.to(self.inputs.device)) for k, v in stored.items()}
            return
        if not self.options.saves_at(0):
            return
        outputs = layer_representations(model, self.inputs, self.chunk_size)
        initial = {k: v.float() for k, v in outputs.items()}
        save_representations(self.run_dir, 0, initial, self.inputs, dtype=torch.float32)
        if self.options.cka:
            self.initial = {k: centred_gram(v) for k, v in initial.items()}

    def probe(self, model: nn.Module) -> dict[str, float]:
        """:func:`representation_metrics` of ``model`` on the probe set, against the initial representations."""
        if self.options.cka and self.initial is None:  # else every CKA would silently be 1
            raise RuntimeError("RepresentationProbe.probe before start(): there are no initial representations")
        metrics, self._last = representation_metrics(
            model, self.inputs, self.labels, self.options, self.initial, self.chunk_size, self._low_pass
        )
        return metrics

    def save(self, epochs_trained: int) -> Path | None:
        """Write the last probed representations as ``epoch_<epochs_trained>`` if the options select
        that epoch (epoch 0 is :meth:`start`'s); the path, or ``None`` when nothing was written."""
        if epochs_trained < 1 or self._last is None or not self.options.saves_at(epochs_trained):
            return None
        path = save_representations(self.run_dir, epochs_trained, self._last, self.inputs)
        self._last = None
        return path


# -- offline: saved representations -----------------------------------------------------------------


def cka_between_runs(run_a: Path | str, run_b: Path | str, epoch: int, *, debiased: bool = True) -> dict[str, float]:
    """``{layer: CKA}`` of two runs' saved representations at the same epoch, layer by layer (e.g. a
    deficit run vs its matched clean run: same seed, so the same probe set, which is checked)."""
    digest_a, digest_b = load_probe_digest(run_a, epoch), load_probe_digest(run_b, epoch)
    if digest_a != digest_b:
        raise ValueError(
            f"{run_a} and {run_b} were probed on different probe sets (digests {digest_a} and {digest_b}): "
            "compare runs with the same seed, data and probes.probe_size"
        )
    return layerwise_cka(load_representations(run_a, epoch), load_representations(run_b, epoch), debiased=debiased)


def layer_cka_matrix(run_dir: Path | str, epoch: int, *, debiased: bool = True) -> tuple[list[str], np.ndarray]:
    """(layers, L x L matrix) of CKA between every pair of layers of one run at one epoch (the
    diagonal is 1, or NaN for a layer constant over the probe set). One N x N kernel per layer."""
    grams = {k: centred_gram(v, debiased=debiased) for k, v in load_representations(run_dir, epoch).items()}
    layers = list(grams)
    matrix = np.array([[float(gram_cka(grams[a], grams[b])) for b in layers] for a in layers])
    return layers, matrix
