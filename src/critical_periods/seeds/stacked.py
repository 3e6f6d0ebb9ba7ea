"""S copies of one architecture as a single module whose parameters are stacked along a new first
axis, evaluated with ``torch.func.vmap(functional_call)``.

Why this is exact per seed: the forward pass of seed ``s`` sees only slice ``s`` of every parameter,
the group's loss is the sum of the seeds' losses (so each seed's gradient is its own loss's), and
SGD (momentum, weight decay) and Adam update every element from that element's own state: one
optimiser over the stacked tensors takes every seed's step as its own optimiser would. Only the
float summation order of the batched kernels differs from the lone run's.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap


def not_vectorisable(model: nn.Module) -> str | None:
    """Why ``model`` cannot be trained as a stack of seeds bit-for-bit like its lone runs, or ``None``.

    BatchNorm updates running statistics in place (vmap cannot batch that into one buffer), and
    dropout draws from the global generator in another order than the lone run does."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            return f"{name or 'the model'} is a {type(module).__name__} (running statistics)"
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            return f"{name or 'the model'} is a dropout layer with p={module.p}"
    return None


def stack_models(models: list[nn.Module]) -> nn.Module:
    """A copy of ``models[0]`` whose every parameter and buffer is the stack of the models' own, shape
    ``(S, *shape)``, under the same names and in the same order (so an optimiser over it numbers its
    parameters as the lone model's would). Call it through :func:`stacked_forward`, never directly."""
    params, buffers = stack_module_state(models)
    stacked = copy.deepcopy(models[0])
    for name, value in params.items():
        owner, leaf = _owner(stacked, name)
        setattr(owner, leaf, nn.Parameter(value.detach().clone()))
    for name, value in buffers.items():
        owner, leaf = _owner(stacked, name)
        owner.register_buffer(leaf, value.detach().clone())
    return stacked


def _owner(module: nn.Module, dotted: str) -> tuple[nn.Module, str]:
    path, _, leaf = dotted.rpartition(".")
    return (module.get_submodule(path) if path else module), leaf


def group_size(stacked: nn.Module) -> int:
    return next(stacked.parameters()).shape[0]


def stacked_forward(stacked: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Seed ``s``'s model on ``x[s]``, for every ``s``: inputs ``(S, B, ...)`` -> outputs ``(S, B, ...)``."""
    params = dict(stacked.named_parameters())
    buffers = dict(stacked.named_buffers())

    def one(p, b, xi):
        return functional_call(stacked, (p, b), (xi,))

    return vmap(one)(params, buffers, x)


def seed_state(stacked: nn.Module, s: int) -> dict[str, torch.Tensor]:
    """Seed ``s``'s parameters and buffers, as the lone model's ``state_dict`` (views, not copies)."""
    return {name: value[s] for name, value in stacked.state_dict(keep_vars=True).items()}


@torch.no_grad()
def copy_seed_into(stacked: nn.Module, s: int, model: nn.Module) -> None:
    """Make ``model`` (an unstacked copy of the architecture) hold seed ``s``'s current weights."""
    state = seed_state(stacked, s)
    for name, tensor in model.state_dict(keep_vars=True).items():
        tensor.copy_(state[name])
