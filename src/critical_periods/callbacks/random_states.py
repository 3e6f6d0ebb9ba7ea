"""Every global random stream, saved in the checkpoint and restored from it.

Training draws from the global torch RNG wherever a model uses dropout, and a user's model or data
code may use numpy's or Python's. Lightning does not checkpoint these streams, so a run resumed (or
branched from another job's checkpoint) would draw differently from the uninterrupted run. The
data order, augmentation, deficit draws and probes use their own seeded generators and need nothing here.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch


def capture() -> dict[str, Any]:
    """The global streams as plain tensors, lists and ints (what a ``weights_only`` load accepts)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    python_version, python_state, python_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        # Only if CUDA is in use already: asking would initialise it on a CPU run.
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None,
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached)],
        "python": [python_version, list(python_state), python_gauss],
    }


def restore(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    kind, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    python_version, python_state, python_gauss = states["python"]
    random.setstate((python_version, tuple(python_state), python_gauss))


class RandomStates(pl.Callback):
    """Saves the global random streams with every checkpoint and restores them when one is loaded."""

    def state_dict(self) -> dict[str, Any]:
        return capture()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        restore(state_dict)
