"""The conditions every probe runs under, restored afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


FULL_PRECISION = (torch.float32, torch.float64)


def check_full_precision(model: nn.Module) -> None:
    """Refuse parameters stored in half precision: the probes' sums of squared gradients and Lanczos
    iterations need float32 at least (mixed precision keeps float32 weights and is fine)."""
    for name, parameter in model.named_parameters():
        if parameter.is_floating_point() and parameter.dtype not in FULL_PRECISION:
            raise ValueError(
                f"probes need float32 or float64 parameters, but {name} is {parameter.dtype}: use "
                f"trainer.precision=32-true, bf16-mixed or 16-mixed (not a '-true' half precision), or probes=none"
            )


def has_stock_forward(module: nn.Module, kind: type[nn.Module]) -> bool:
    """``module`` is a ``kind`` whose forward is ``kind``'s own. A probe that knows what a layer type
    computes (a per-example gradient formula, BatchNorm as an affine map) may rely on it only then: a
    subclass that overrides forward (a scaled or masked weight, SyncBatchNorm) computes something else
    from the same parameters."""
    return isinstance(module, kind) and type(module).forward is kind.forward


def check_class_logits(logits: Tensor, examples: int) -> Tensor:
    """The model's output, if it is (N, C) class logits for the N examples given; else a one-line error.

    Sequence outputs (N, C, T) would make the probes' cross-entropy a per-position loss whose labels
    the probe set does not have: the model must reduce over positions itself.
    """
    if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[0] != examples:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(
            f"the probes need the model to return logits of shape (N, C) = ({examples}, classes), one row per "
            f"example, but it returned {shape}: reduce extra dimensions (e.g. pool or take the last time step) "
            "inside the model's forward"
        )
    return logits


@contextmanager
def full_precision(model: nn.Module) -> Iterator[None]:
    """Autocast off on the model's device, so code inside computes in the parameters' own dtype even
    when called from a ``bf16-mixed``/``16-mixed`` region; half-precision parameters are refused.

    Everything between the products (Lanczos vectors, Gram matrices) also belongs inside it: autocast
    would otherwise run their float32 matrix products in half precision.
    """
    check_full_precision(model)
    device_type = next((p.device.type for p in model.parameters()), "cpu")
    with torch.autocast(device_type, enabled=False):
        yield


@contextmanager
def probe_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode (BatchNorm uses its running statistics, dropout is off) with autograd enabled, in
    full precision.

    Each submodule's own ``training`` flag is restored on exit, so a model whose parts are in mixed
    modes comes back exactly as it was. ``inference_mode(False)`` as well as ``enable_grad`` because
    a Lightning hook may be called under inference mode, which ``enable_grad`` alone does not undo.
    Autocast is switched off on the model's device, so under ``bf16-mixed``/``16-mixed`` training
    the probes still compute in the parameters' own dtype (float32), not in half precision
    (:func:`full_precision`).
    """
    check_full_precision(model)
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad(), full_precision(model):
            yield
    finally:
        for module, training in modes:
            module.training = training
