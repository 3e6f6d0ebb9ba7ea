"""Image convnets: a small CNN and All-CNN-C (Springenberg et al. 2015), as in Achille et al."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from critical_periods.config.validation import not_allowed
from critical_periods.models.checks import check_image_shape, num_classes_of, positive_int


def _conv_block(
    layers: OrderedDict[str, nn.Module],
    k: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int,
    batch_norm: bool,
) -> None:
    """Append conv{k} -> [bn{k}] -> act{k} to ``layers``, with 'same' padding for odd kernels."""
    layers[f"conv{k}"] = nn.Conv2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=kernel_size // 2,
        bias=not batch_norm,  # BatchNorm's shift replaces the bias (whose gradient would be 0)
    )
    if batch_norm:
        layers[f"bn{k}"] = nn.BatchNorm2d(out_channels)
    layers[f"act{k}"] = nn.ReLU()


class SimpleCNN(nn.Module):
    """Conv-pool stages and a two-layer classifier head.

    Architecture, with S = len(channels) stages, each halving H and W by max-pooling::

        x                                                   # (B, C, H, W)
        for k in 1..S:
            conv{k}: Conv2d 3x3 -> [bn{k}] -> act{k}: ReLU  # (B, channels[k-1], H_{k-1}, W_{k-1})
            pool{k}: MaxPool2d(2)                           # (B, channels[k-1], H_k, W_k)
        flatten                                             # (B, channels[-1] * H_S * W_S)
        head.fc1: Linear -> head.act: ReLU                  # (B, hidden)
        head.fc2: Linear                                    # (B, num_classes)

    with H_k = H // 2**k, so H and W must be at least 2**S. 1-D inputs (C, L) are rejected.

    Args:
        input_shape: (C, H, W) per-example shape.
        num_classes: number of output logits.
        channels: output channels of each conv stage, at least one.
        hidden: width of the hidden Linear layer of the head.
        batch_norm: add BatchNorm2d after each conv.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        channels: Sequence[int] = (32, 64),
        hidden: int = 128,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        in_channels, height, width = check_image_shape("SimpleCNN", input_shape)
        num_classes_of(num_classes)
        if isinstance(channels, (int, str)) or len(channels) == 0:
            raise not_allowed("channels", channels, "a non-empty list of whole numbers >= 1")
        channels = tuple(int(c) for c in channels)
        if min(channels) < 1:
            raise not_allowed("channels", list(channels), "a non-empty list of whole numbers >= 1")
        positive_int("hidden", hidden)
        stages = len(channels)
        if min(height, width) < 2**stages:
            raise ValueError(
                f"SimpleCNN with {stages} stages (channels={list(channels)}) halves the image "
                f"{stages} times, so it needs H and W >= {2**stages}, got input_shape {input_shape}"
            )

        self.input_shape = (in_channels, height, width)
        self.num_classes = num_classes
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for k, out_channels in enumerate(channels, start=1):
            _conv_block(layers, k, in_channels, out_channels, 3, 1, batch_norm)
            layers[f"pool{k}"] = nn.MaxPool2d(2)
            in_channels = out_channels
        self.features = nn.Sequential(layers)
        self.flatten = nn.Flatten()
        flat = channels[-1] * (height // 2**stages) * (width // 2**stages)
        self.head = nn.Sequential(
            OrderedDict(fc1=nn.Linear(flat, hidden), act=nn.ReLU(), fc2=nn.Linear(hidden, num_classes))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, channels[-1], H_S, W_S)
        x = self.flatten(x)  # (B, channels[-1] * H_S * W_S)
        return self.head(x)  # (B, num_classes)


class AllCNN(nn.Module):
    """All-CNN-C (Springenberg et al. 2015), the network of Achille et al.'s CIFAR-10 experiments.

    Architecture, with w = width (96 in the paper) and every 3x3 conv padded by 1::

        x                                                   # (B, C, H, W)
        conv1: 3x3, w        -> [bn1] -> act1: ReLU         # (B, w, H, W)
        conv2: 3x3, w        -> [bn2] -> act2               # (B, w, H, W)
        conv3: 3x3, w, s2    -> [bn3] -> act3 -> [drop3]    # (B, w, H/2, W/2)
        conv4: 3x3, 2w       -> [bn4] -> act4               # (B, 2w, H/2, W/2)
        conv5: 3x3, 2w       -> [bn5] -> act5               # (B, 2w, H/2, W/2)
        conv6: 3x3, 2w, s2   -> [bn6] -> act6 -> [drop6]    # (B, 2w, H/4, W/4)
        conv7: 3x3, 2w       -> [bn7] -> act7               # (B, 2w, H/4, W/4)
        conv8: 1x1, 2w       -> [bn8] -> act8               # (B, 2w, H/4, W/4)
        classifier: 1x1 conv to num_classes                 # (B, num_classes, H/4, W/4)
        pool: global average, flatten                       # (B, num_classes)

    (H/2 means ceil(H/2).) Departures from the paper, all deliberate:
    - conv7 is padded (the paper's is 'valid'), so any image size works, down to 8x8 blurred
      or tiny test images: the global pool absorbs the spatial size.
    - The classifier has no ReLU or BatchNorm: the pooled outputs are the logits, and a ReLU
      there would clip them at 0.
    - BatchNorm is on by default (as in Achille et al.'s runs); the paper had none.
    - ``dropout`` applies after the two stride-2 stages, where the paper put its 50% dropout;
      the paper's 20% input dropout is left out (it would act as an extra deficit).
    1-D inputs (C, L) are rejected rather than run through a Conv1d variant: Conv1DNet is
    the model for signals, and a silently different network under the same name would mislead.

    Args:
        input_shape: (C, H, W) per-example shape.
        num_classes: number of output logits.
        width: channels of the first stage (96 in the paper); later stages have 2 * width.
        batch_norm: add BatchNorm2d after each conv except the classifier.
        dropout: dropout probability after conv3 and conv6, in [0, 1).
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        width: int = 96,
        batch_norm: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        in_channels, height, width_px = check_image_shape("AllCNN", input_shape)
        num_classes_of(num_classes)
        positive_int("width", width)
        if not 0.0 <= dropout < 1.0:
            raise not_allowed("dropout", dropout, "a number in [0, 1)")

        self.input_shape = (in_channels, height, width_px)
        self.num_classes = num_classes
        w1, w2 = width, 2 * width
        # (out_channels, kernel_size, stride) of conv1..conv8.
        plan = [(w1, 3, 1), (w1, 3, 1), (w1, 3, 2), (w2, 3, 1), (w2, 3, 1), (w2, 3, 2), (w2, 3, 1), (w2, 1, 1)]
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for k, (out_channels, kernel_size, stride) in enumerate(plan, start=1):
            _conv_block(layers, k, in_channels, out_channels, kernel_size, stride, batch_norm)
            if stride == 2 and dropout > 0:
                layers[f"drop{k}"] = nn.Dropout(dropout)
            in_channels = out_channels
        self.features = nn.Sequential(layers)
        self.classifier = nn.Conv2d(w2, num_classes, kernel_size=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, 2w, H/4, W/4)
        x = self.classifier(x)  # (B, num_classes, H/4, W/4)
        x = self.pool(x)  # (B, num_classes, 1, 1)
        return self.flatten(x)  # (B, num_classes)
