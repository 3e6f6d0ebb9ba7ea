"""Each parametrised layer's output on the probe set: the representations that CKA compares.

A layer is a module with trainable parameters of its own (:func:`parametrised_layers`, the names the
Fisher probe uses), so for ``nn.Sequential(Linear, ReLU, Linear)`` the representations are the
pre-activations of each Linear. A module called several times in one forward pass (shared weights)
contributes all its outputs, concatenated along the features in call order. A layer whose output is
not a tensor (a tuple, a dict), or not one row per example, is skipped.

Memory: N x (features of the layer) per layer, in the model's dtype (for the default MLP 40-512-512-
512-10 at N = 512 in float32: 512 x 1546 x 4 bytes, about 3.2 MB).

On disk (:func:`save_representations`): one uncompressed float16 ``.npz`` per saved epoch,
``<run dir>/representations/epoch_<epochs trained, 4 digits>.npz`` (``epoch_0000``: the initial
weights, kept in float32 by the representation probe since every CKA vs init is taken against it),
one array per layer plus a digest of the probe inputs. Size: N x sum(features) x 2 bytes
plus about 300 bytes per layer (zip and .npy headers). Measured at N = 512: 1,584,462 bytes for the
default MLP (features 512 + 512 + 512 + 10), 1,158,490 bytes for the default Conv1DNet (32 x 20 +
32 x 10 + 32 x 5 + 10). float16 keeps about 3 significant digits, enough for CKA (float16 vs float32
CKA at initialisation differed by at most 2e-6 on those two models) but overflows to inf above 65504.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from critical_periods.record.atomic import write_atomic
from critical_periods.probes.context import probe_mode
from critical_periods.probes.per_example import parametrised_layers
from critical_periods.record.layout import REPRESENTATIONS_DIR
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
    return forward_with_representations(model, inputs, chunk_size)[0]


def forward_with_representations(
    model: nn.Module, inputs: Tensor, chunk_size: int | None = None
) -> tuple[dict[str, Tensor], Tensor]:
    """:func:`layer_representations` and the model's outputs (N, ...) from the same forward pass."""
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive number of examples or None, got {chunk_size}")
    if len(inputs) == 0:
        raise ValueError("the probe set is empty: representations need at least one example")
    layers = parametrised_layers(model)
    chunks: dict[str, list[Tensor]] = defaultdict(list)  # per layer, one (n_chunk, features) per chunk
    calls: dict[str, list[Tensor]] = defaultdict(list)  # per layer, the outputs of the current chunk
    outputs: list[Tensor] = []
    batch = [0]  # examples in the current chunk

    def capture(name: str):
        def hook(module: nn.Module, args: tuple, output) -> None:
            if isinstance(output, Tensor) and output.dim() >= 1 and output.shape[0] == batch[0]:
                # a copy: a later in-place op (ReLU(inplace=True)) would overwrite the output
                calls[name].append(output.detach().reshape(batch[0], -1).clone())

        return hook

    handles = [module.register_forward_hook(capture(name)) for name, module in layers.items()]
    step = chunk_size or len(inputs)
    try:
        with probe_mode(model), torch.no_grad():
            for start in range(0, len(inputs), step):
                raise_if_stop_requested()
                calls.clear()
                chunk = inputs[start : start + step]
                batch[0] = len(chunk)
                outputs.append(model(chunk).detach())
                for name, layer_outputs in calls.items():
                    chunks[name].append(torch.cat(layer_outputs, dim=1))
    finally:
        for handle in handles:
            handle.remove()
    # the layers' order of definition, not of first call; only layers seen in every chunk have N rows
    representations = {name: torch.cat(chunks[name]) for name in layers if len(chunks.get(name, ())) == len(outputs)}
    return representations, torch.cat(outputs)


# Reserved array name in the .npz (module names never start with "__"): the probe inputs' digest.
_DIGEST_KEY = "__probe_digest__"


def representations_path(run_dir: Path | str, epoch: int) -> Path:
    """``<run_dir>/representations/epoch_<epoch:04d>.npz``; ``epoch`` = epochs trained (0: initial weights)."""
    return Path(run_dir) / REPRESENTATIONS_DIR / f"epoch_{int(epoch):04d}.npz"


def probe_digest(inputs: Tensor) -> str:
    """A short hash of the probe inputs (shape and float32 values): equal digests, same probe set."""
    data = inputs.detach().to("cpu", torch.float32).contiguous()
    return hashlib.sha256(repr(tuple(data.shape)).encode() + data.numpy().tobytes()).hexdigest()[:16]


def save_representations(
    run_dir: Path | str,
    epoch: int,
    representations: dict[str, Tensor],
    probe_inputs: Tensor,
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Write ``representations`` in ``dtype`` to :func:`representations_path`, atomically (replacing
    an earlier file of the same epoch, as a resumed run does). Returns the path."""
    if _DIGEST_KEY in representations:
        raise ValueError(f"{_DIGEST_KEY!r} is reserved and cannot be a layer name")
    arrays = {name: z.detach().to("cpu", dtype).numpy() for name, z in representations.items()}
    arrays[_DIGEST_KEY] = np.array(probe_digest(probe_inputs))
    path = representations_path(run_dir, epoch)
    write_atomic(path, lambda f: np.savez(f, **arrays))
    return path


def saved_epochs(run_dir: Path | str) -> list[int]:
    """The epochs (epochs trained) whose representations ``run_dir`` holds, ascending."""
    folder = Path(run_dir) / REPRESENTATIONS_DIR
    return sorted(int(p.stem.removeprefix("epoch_")) for p in folder.glob("epoch_*.npz"))


def load_representations(run_dir: Path | str, epoch: int) -> dict[str, Tensor]:
    """``{layer: (N, features) tensor}`` in the dtype :func:`save_representations` wrote (float16 by default)."""
    path = representations_path(run_dir, epoch)
    if not path.exists():
        raise FileNotFoundError(
            f"no representations for epoch {epoch} in {Path(run_dir)}: saved epochs are {saved_epochs(run_dir)}"
        )
    with np.load(path, allow_pickle=False) as stored:
        return {name: torch.from_numpy(stored[name]) for name in stored.files if name != _DIGEST_KEY}


def load_probe_digest(run_dir: Path | str, epoch: int) -> str:
    """The :func:`probe_digest` stored with that epoch's representations."""
    with np.load(representations_path(run_dir, epoch), allow_pickle=False) as stored:
        return str(stored[_DIGEST_KEY])
