"""Strided 1-D convolutional network for (C, L) signals such as mnist1d."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from critical_periods.models.checks import input_shape_of, num_classes_of, positive_int


class Conv1DNet(nn.Module):
    """Stack of stride-2 Conv1d layers and a linear head, after the mnist1d ConvBase.

    Architecture, with padding p = kernel_size // 2 so each conv halves the length
    (L_k = floor((L_{k-1} + 2p - kernel_size) / 2) + 1, e.g. 40 -> 20 -> 10 -> 5)::

        x                                                   # (B, C, L)
        for k in 1..depth:
            conv{k}: Conv1d(stride 2) -> [bn{k}: BatchNorm1d] -> act{k}: ReLU
                                                            # (B, channels, L_k)
        flatten                                             # (B, channels * L_depth)
        head: Linear(channels * L_depth, num_classes)       # (B, num_classes)

    Convs drop their bias when followed by BatchNorm (its shift replaces it).
    Image inputs (C, H, W) are rejected: use SimpleCNN, AllCNN or ResNet18 for those.

    Args:
        input_shape: (C, L) per-example shape, e.g. (1, 40) for mnist1d.
        num_classes: number of output logits.
        channels: channels of every conv layer.
        depth: number of conv layers, >= 1.
        kernel_size: conv kernel size, >= 1.
        batch_norm: add BatchNorm1d after each conv.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        channels: int = 32,
        depth: int = 3,
        kernel_size: int = 5,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        input_shape = input_shape_of(
            input_shape,
            rank=2,
            message=(
                "Conv1DNet needs a 1-D signal input_shape (C, L), got {shape}; "
                "use SimpleCNN, AllCNN or ResNet18 for images, or MLP for any shape"
            ),
        )
        num_classes_of(num_classes)
        positive_int("channels", channels)
        positive_int("depth", depth)
        positive_int("kernel_size", kernel_size)

        self.input_shape = input_shape
        self.num_classes = num_classes
        in_channels, length = input_shape
        padding = kernel_size // 2
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for k in range(1, depth + 1):
            layers[f"conv{k}"] = nn.Conv1d(
                in_channels, channels, kernel_size, stride=2, padding=padding, bias=not batch_norm
            )
            if batch_norm:
                layers[f"bn{k}"] = nn.BatchNorm1d(channels)
            layers[f"act{k}"] = nn.ReLU()
            in_channels = channels
            # Same formula as Conv1d; with p = k // 2 it never reaches 0 for L >= 1.
            length = (length + 2 * padding - kernel_size) // 2 + 1
        self.features = nn.Sequential(layers)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(channels * length, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, channels, L_depth)
        x = self.flatten(x)  # (B, channels * L_depth)
        return self.head(x)  # (B, num_classes)
