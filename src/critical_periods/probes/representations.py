"""Each parametrised layer's output on the probe set: the representations that CKA compares.

A layer is a module with trainable parameters of its own (:func:`parametrised_layers`, the names the
Fisher probe uses), so for ``nn.Sequential(Linear, ReLU, Linear)`` the representations are the
pre-activations of each Linear. A module called several times in one forward pass (shared weights)
contributes all its outputs, concatenated along the features in call order. A layer whose output is
not a tensor (a tuple, a dict), or not one row per example, is skipped.

Memory: N x (features of the layer) per layer, in the model's dtype (for the default MLP 40-512-512-
512-10 at N = 512 in float32: 512 x 1546 x 4 bytes, about 3.2 MB).
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import Tensor, nn

from critical_periods.probes.context import probe_mode
from critical_periods.probes.per_example import parametrised_layers
from critical_periods.stopping import raise_if_stop_requested


def layer_representations(model: nn.Module, inputs: Tensor, chunk_size: int | None = None) -> dict[str, Tensor]:
    """``{layer name: (N, features)}``: each parametrised layer's output on ``inputs``, flattened.

    One forward pass over ``inputs`` in chunks of ``chunk_size`` examples (``None``: all at once),
    in eval mode without autograd; the model's train/eval flags are restored and no RNG is drawn
    (eval mode turns dropout off). Tensors are detached, on the model's device, in its dtype.

    >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> {name: tuple(z.shape) for name, z in layer_representations(model, torch.randn(5, 3)).items()}
    {'0': (5, 4), '2': (5, 2)}
    """
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive number of examples or None, got {chunk_size}")
    layers = parametrised_layers(model)
    chunks: dict[str, list[Tensor]] = defaultdict(list)  # per layer, one (n_chunk, features) per chunk
    calls: dict[str, list[Tensor]] = defaultdict(list)  # per layer, the outputs of the current chunk
    batch = [0]  # examples in the current chunk

    def capture(name: str):
        def hook(module: nn.Module, args: tuple, output) -> None:
            if isinstance(output, Tensor) and output.dim() >= 1 and output.shape[0] == batch[0]:
                # a copy: a later in-place op (ReLU(inplace=True)) would overwrite the output
                calls[name].append(output.detach().reshape(batch[0], -1).clone())

        return hook

    handles = [module.register_forward_hook(capture(name)) for name, module in layers.items()]
    step = chunk_size or max(len(inputs), 1)
    n_chunks = 0
    try:
        with probe_mode(model), torch.no_grad():
            for start in range(0, len(inputs), step):
                raise_if_stop_requested()
                calls.clear()
                chunk = inputs[start : start + step]
                batch[0] = len(chunk)
                model(chunk)
                n_chunks += 1
                for name, outputs in calls.items():
                    chunks[name].append(torch.cat(outputs, dim=1))
    finally:
        for handle in handles:
            handle.remove()
    # the layers' order of definition, not of first call; only layers seen in every chunk have N rows
    return {name: torch.cat(chunks[name]) for name in layers if len(chunks.get(name, ())) == n_chunks > 0}
