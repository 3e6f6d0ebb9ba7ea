"""The conditions every probe runs under, restored afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def probe_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode (BatchNorm uses its running statistics, dropout is off) with autograd enabled.

    Each submodule's own ``training`` flag is restored on exit, so a model whose parts are in mixed
    modes comes back exactly as it was. ``inference_mode(False)`` as well as ``enable_grad`` because
    a Lightning hook may be called under inference mode, which ``enable_grad`` alone does not undo.
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            yield
    finally:
        for module, training in modes:
            module.training = training
