"""Deep linear network: bias-free Linear layers without nonlinearity, for dynamics studies."""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from critical_periods.models.checks import input_shape_of, num_classes_of, positive_int


class DeepLinear(nn.Module):
    """Product of ``depth`` bias-free matrices: f(x) = W_depth ... W_2 W_1 flatten(x).

    The function is linear in x (no bias, no activation), but training dynamics in the
    weights are not, which is what makes these networks a model of learning dynamics
    (Saxe et al. 2014). Architecture, with D = prod(input_shape)::

        x                                                   # (B, *input_shape)
        flatten                                             # (B, D)
        fc1: Linear(D, width)                               # (B, width)
        fc2 .. fc{depth-1}: Linear(width, width)            # (B, width)
        fc{depth}: Linear(width, num_classes)               # (B, num_classes)

    With depth = 1 it is the single map fc1: Linear(D, num_classes) and ``width`` is unused.
    Weights keep PyTorch's default Linear initialisation.

    Args:
        input_shape: per-example shape without batch, any rank.
        num_classes: number of outputs.
        width: width of the hidden (linear) layers.
        depth: number of Linear layers, >= 1.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        width: int = 128,
        depth: int = 3,
    ) -> None:
        super().__init__()
        input_shape = input_shape_of(input_shape)
        num_classes_of(num_classes)
        positive_int("width", width)
        positive_int("depth", depth)

        self.input_shape = input_shape
        self.num_classes = num_classes
        self.flatten = nn.Flatten()
        sizes = [math.prod(input_shape)] + [width] * (depth - 1) + [num_classes]
        self.layers = nn.Sequential(
            OrderedDict(
                (f"fc{k}", nn.Linear(fan_in, fan_out, bias=False))
                for k, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(x)  # (B, D)
        return self.layers(x)  # (B, num_classes)
