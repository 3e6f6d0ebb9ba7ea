"""ResNet-18, CIFAR variant (He et al. 2016; the common 3x3-stem, no-max-pool layout)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from critical_periods.models.checks import check_image_shape, num_classes_of, positive_int


class BasicBlock(nn.Module):
    """Two 3x3 convs with BatchNorm and an identity (or 1x1 projection) shortcut.

    Shapes::

        x                                                   # (B, C_in, H, W)
        conv1: 3x3, stride s -> bn1 -> act1: ReLU           # (B, C_out, H/s, W/s)
        conv2: 3x3           -> bn2                         # (B, C_out, H/s, W/s)
        + shortcut(x): identity, or conv 1x1 stride s -> bn when the shape changes
        act2: ReLU                                          # (B, C_out, H/s, W/s)
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.act2 = nn.ReLU()
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                    bn=nn.BatchNorm2d(out_channels),
                )
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))  # (B, C_out, H/s, W/s)
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))  # out-of-place add: keeps vmap/functional_call safe


class ResNet18(nn.Module):
    """ResNet-18 for small images: 3x3 stem, no max-pool, BasicBlocks [2, 2, 2, 2].

    Architecture, with w = width (64 standard)::

        x                                                   # (B, C, H, W)
        stem: conv 3x3, w -> bn -> act                      # (B, w, H, W)
        layer1: block1, block2 (stride 1)                   # (B, w, H, W)
        layer2: block1 (stride 2), block2                   # (B, 2w, H/2, W/2)
        layer3: block1 (stride 2), block2                   # (B, 4w, H/4, W/4)
        layer4: block1 (stride 2), block2                   # (B, 8w, H/8, W/8)
        pool: global average, flatten                       # (B, 8w)
        fc: Linear(8w, num_classes)                         # (B, num_classes)

    With w = 64, input (3, 32, 32) and 10 classes: 11,173,962 parameters. Any image size
    works (down to 1x1) thanks to the padding and the global pool. 1-D inputs are rejected.

    Args:
        input_shape: (C, H, W) per-example shape.
        num_classes: number of output logits.
        width: channels of the stem and layer1; layer k has width * 2**(k-1).
    """

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: int = 64) -> None:
        super().__init__()
        in_channels, height, width_px = check_image_shape("ResNet18", input_shape)
        num_classes_of(num_classes)
        positive_int("width", width)

        self.input_shape = (in_channels, height, width_px)
        self.num_classes = num_classes
        self.stem = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                bn=nn.BatchNorm2d(width),
                act=nn.ReLU(),
            )
        )
        self.layer1 = self._stage(width, width, stride=1)
        self.layer2 = self._stage(width, 2 * width, stride=2)
        self.layer3 = self._stage(2 * width, 4 * width, stride=2)
        self.layer4 = self._stage(4 * width, 8 * width, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8 * width, num_classes)

    @staticmethod
    def _stage(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
        """Two BasicBlocks named block1, block2; only the first may downsample."""
        return nn.Sequential(
            OrderedDict(
                block1=BasicBlock(in_channels, out_channels, stride),
                block2=BasicBlock(out_channels, out_channels, 1),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, w, H, W)
        x = self.layer1(x)  # (B, w, H, W)
        x = self.layer2(x)  # (B, 2w, H/2, W/2)
        x = self.layer3(x)  # (B, 4w, H/4, W/4)
        x = self.layer4(x)  # (B, 8w, H/8, W/8)
        x = self.flatten(self.pool(x))  # (B, 8w)
        return self.fc(x)  # (B, num_classes)
