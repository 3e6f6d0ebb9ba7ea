"""Speed switches that leave the numbers alone: channels_last weights and a compiled forward pass.

Config keys (``performance`` in ``conf/train.yaml``)::

    performance:
      channels_last: false   # 4-D conv weights in NHWC order: faster convs on recent GPUs (tensor cores)
      compile: false         # torch.compile the forward pass that training uses

Both are off by default. Measured on this project's 2-core CPU machine: channels_last trains an
All-CNN (width 32, batch 32) at the same speed (126 vs 129 ms per step); compiling a small CNN took
50-70 s on a cold cache, the first call only. Their gains are on GPUs, which were not available here.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import torch
from torch import Tensor, nn

COMPILERS = ("g++", "c++", "clang++")


def _has_cxx_compiler() -> bool:
    """Inductor, torch.compile's default backend, builds C++ kernels for the CPU (and launchers
    for Triton on GPUs), so it needs one of the usual compilers or ``$CXX``."""
    candidates = [os.environ["CXX"]] if os.environ.get("CXX") else []
    return any(shutil.which(name) for name in [*candidates, *COMPILERS])


def prepare_model(model: nn.Module, channels_last: bool = False, compile: bool = False) -> Callable[[Tensor], Tensor]:
    """Apply the performance switches to ``model``; return the function training should call.

    ``channels_last``: convert the model's 4-D tensors (conv weights) to ``torch.channels_last``, in
    place. A memory layout only: the outputs are the same up to floating-point summation order, and
    models without 4-D weights (MLP, Conv1DNet) are unchanged.

    ``compile``: return ``torch.compile(model.forward)`` rather than ``model``. The module itself
    stays uncompiled, so the probes (``torch.func`` transforms, which do not go through a compiled
    module) and the checkpoints (parameter names) see exactly the model they see without it.

    >>> net = nn.Conv2d(3, 4, 3)
    >>> forward = prepare_model(net, channels_last=True)
    >>> forward is net, net.weight.is_contiguous(memory_format=torch.channels_last)
    (True, True)
    """
    for key, value in (("channels_last", channels_last), ("compile", compile)):
        if not isinstance(value, bool):
            raise ValueError(f"performance.{key}={value!r} is not allowed: it must be true or false")
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if not compile:
        return model
    if not _has_cxx_compiler():
        raise ValueError(
            f"performance.compile=true is not allowed here: torch.compile needs a C++ compiler "
            f"({', '.join(COMPILERS)} or $CXX) and none is on PATH; set performance.compile=false"
        )
    return torch.compile(model.forward)
