"""Multi-layer perceptron on flattened inputs (any input shape)."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from critical_periods.config.validation import not_allowed
from critical_periods.models.checks import input_shape_of, num_classes_of

class Erf(nn.Module):
    """erf(x): the activation of Hu et al. (2020)'s two-layer networks (Gaussian moments in closed form)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.erf(x)


# Name -> activation class; the keys are what a config may write in `activation`.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
    "erf": Erf,
}


def make_activation(name: str) -> nn.Module:
    """A fresh activation module from its config name (see ``ACTIVATIONS``).

    Never ``inplace=True``: in-place activations break ``torch.func.vmap`` and
    ``functional_call``, which the probes use for per-example gradients.
    """
    if name not in ACTIVATIONS:
        raise not_allowed("activation", name, f"one of {', '.join(sorted(ACTIVATIONS))}")
    return ACTIVATIONS[name]()


class MLP(nn.Module):
    """Fully connected network on the flattened input.

    Architecture, with D = prod(input_shape) and K = len(widths)::

        x                                                   # (B, *input_shape)
        flatten                                             # (B, D)
        for k in 1..K:
            fc{k}: Linear -> [bn{k}: BatchNorm1d] -> act{k} -> [drop{k}: Dropout]
                                                            # (B, widths[k-1])
        head: Linear(widths[-1], num_classes)               # (B, num_classes)

    The Linear layers drop their bias when followed by BatchNorm (its shift replaces it).
    Achille et al. (2019) use widths 2500-2000-1500-1000-500 with BatchNorm for MNIST:
    ``MLP(input_shape, 10, widths=(2500, 2000, 1500, 1000, 500), batch_norm=True)``.

    Args:
        input_shape: per-example shape without batch, any rank, e.g. (1, 40) or (3, 32, 32).
        num_classes: number of output logits.
        widths: hidden layer widths, at least one.
        activation: a key of ``ACTIVATIONS``.
        batch_norm: add BatchNorm1d after each hidden Linear.
        dropout: dropout probability after each hidden activation, in [0, 1).
        init_scale: multiplies every Linear layer's initial weights and biases (PyTorch's default
            init, uniform with std 1/sqrt(3 fan_in)), so each weight has std init_scale/sqrt(3 fan_in).
            1.0 (the default) leaves the initial weights untouched. A scale << 1 is the small
            initialisation at which Xu et al. see the first layer's neurons condense onto a few
            directions early in training (their N(0, fan_in^(-2 gamma)) with gamma > 1/2 is a
            scale that shrinks with the width; here it is a constant).
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        widths: Sequence[int] = (512, 512, 512),
        activation: str = "relu",
        batch_norm: bool = False,
        dropout: float = 0.0,
        init_scale: float = 1.0,
    ) -> None:
        super().__init__()
        input_shape = input_shape_of(input_shape)
        num_classes_of(num_classes)
        # A bare int is most likely a typo for a one-element list; say so instead of guessing.
        if isinstance(widths, (int, str)) or len(widths) == 0:
            raise not_allowed("widths", widths, "a non-empty list of whole numbers >= 1")
        widths = tuple(int(w) for w in widths)
        if min(widths) < 1:
            raise not_allowed("widths", list(widths), "a non-empty list of whole numbers >= 1")
        make_activation(activation)  # validates the name before any layer is built
        if not 0.0 <= dropout < 1.0:
            raise not_allowed("dropout", dropout, "a number in [0, 1)")
        if isinstance(init_scale, bool) or not isinstance(init_scale, (int, float)) or not 0 < init_scale < math.inf:
            raise not_allowed("init_scale", init_scale, "a number > 0 (1.0: the default initialisation)")

        self.input_shape = input_shape
        self.num_classes = num_classes
        self.flatten = nn.Flatten()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        fan_in = math.prod(input_shape)
        for k, width in enumerate(widths, start=1):
            layers[f"fc{k}"] = nn.Linear(fan_in, width, bias=not batch_norm)
            if batch_norm:
                layers[f"bn{k}"] = nn.BatchNorm1d(width)
            layers[f"act{k}"] = make_activation(activation)
            if dropout > 0:
                layers[f"drop{k}"] = nn.Dropout(dropout)
            fan_in = width
        self.features = nn.Sequential(layers)
        self.head = nn.Linear(fan_in, num_classes)
        self.init_scale = float(init_scale)
        if init_scale != 1.0:  # skipped at 1.0, so a default model is bitwise the one built before the option
            with torch.no_grad():
                for layer in self.modules():
                    if isinstance(layer, nn.Linear):
                        layer.weight.mul_(init_scale)
                        if layer.bias is not None:
                            layer.bias.mul_(init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(x)  # (B, D)
        x = self.features(x)  # (B, widths[-1])
        return self.head(x)  # (B, num_classes)
