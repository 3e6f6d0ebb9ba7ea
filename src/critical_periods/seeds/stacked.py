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
import torch.nn.functional as F
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


# Elementwise layers: applied to (S, B, ...) as they are.
ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Softplus, nn.Tanh, nn.Sigmoid, nn.Identity)


def _chain_classes() -> tuple[type, ...]:
    from critical_periods.models.conv1d import Conv1DNet
    from critical_periods.models.mlp import MLP

    return (MLP, Conv1DNet)  # their forward applies their children in registration order


def _leaves(module: nn.Module) -> list[nn.Module] | None:
    out = []
    for child in module.children():
        if isinstance(child, nn.Sequential):
            inner = _leaves(child)
            if inner is None:
                return None
            out.extend(inner)
        elif isinstance(child, ELEMENTWISE + (nn.Linear,)):
            out.append(child)
        elif isinstance(child, nn.Flatten) and child.start_dim == 1 and child.end_dim == -1:
            out.append(child)
        elif isinstance(child, nn.Conv1d) and child.padding_mode == "zeros" and isinstance(child.padding, tuple):
            out.append(child)
        else:
            return None
    return out


def layer_chain(stacked: nn.Module) -> list[nn.Module] | None:
    """The layers of ``stacked`` in the order its forward applies them, when it is a model known to be
    such a chain of layers with batched forms here (the MLP, Conv1DNet); else ``None``."""
    if not isinstance(stacked, _chain_classes()):
        return None
    return _leaves(stacked)


def _batched(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``layer`` of every seed on its own slice of ``x`` (S, B, ...), with its stacked weights."""
    if isinstance(layer, nn.Linear):
        weight = layer.weight.transpose(1, 2)  # (S, in, out)
        if layer.bias is None:
            return torch.bmm(x, weight)
        return torch.baddbmm(layer.bias.unsqueeze(1), x, weight)
    if isinstance(layer, nn.Conv1d):
        # One grouped convolution: seed s's channels are group s.
        seeds, batch, channels, length = x.shape
        weight = layer.weight.flatten(0, 1)  # (S * out, in / groups, k)
        bias = layer.bias.flatten() if layer.bias is not None else None
        out = F.conv1d(x.transpose(0, 1).reshape(batch, seeds * channels, length), weight, bias,
                       layer.stride, layer.padding, layer.dilation, layer.groups * seeds)
        return out.view(batch, seeds, layer.out_channels, -1).transpose(0, 1)
    if isinstance(layer, nn.Flatten):
        return x.flatten(2)
    return layer(x)  # elementwise


def stacked_forward(stacked: nn.Module, x: torch.Tensor, vmapped: bool | None = None) -> torch.Tensor:
    """Seed ``s``'s model on ``x[s]``, for every ``s``: inputs ``(S, B, ...)`` -> outputs ``(S, B, ...)``.

    The MLP and Conv1DNet run as batched matrix products and one grouped convolution per layer:
    ``vmap(functional_call)`` costs more than the arithmetic for small models (the per-call
    reparametrisation of every module). Other models, or ``vmapped=True``, go through vmap."""
    chain = None if vmapped else layer_chain(stacked)
    if chain is not None:
        for layer in chain:
            x = _batched(layer, x)
        return x
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
