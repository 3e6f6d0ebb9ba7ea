"""Standard CIFAR augmentation as batched tensor functions: random crops of the zero-padded image and
horizontal flips, drawn per example, applied on the batch's device.

Draws come from a CPU generator seeded by ``(seed, epoch, batch index)`` and are moved to the batch's
device, never from the global RNG: the same run sees the same augmented batches on any device, and
a run resumed (or branched) from a checkpoint at an epoch boundary continues bitwise like the
uninterrupted one.
"""

from __future__ import annotations

import numpy as np
import torch


def flip_lr(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror the images ``x`` (B, C, H, W) left-right where the boolean ``flip`` (B,) is true.

    >>> x = torch.arange(4.0).reshape(2, 1, 1, 2)
    >>> flip_lr(x, torch.tensor([True, False])).flatten().tolist()
    [1.0, 0.0, 2.0, 3.0]
    """
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def translate(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, pad: int) -> torch.Tensor:
    """Crop an H x W window from each image zero-padded by ``pad`` on every side, shifted by
    ``(dy[b], dx[b])`` in [-pad, pad] from the centre: ``out[b, c, i, j] = x[b, c, i + dy, j + dx]``,
    and 0 where that falls outside the image.

    Zero is the mean of the normalised data, so the padding is mean-coloured, as in standard CIFAR
    training (torchvision ``RandomCrop(32, padding=4)`` on normalised tensors).

    >>> x = torch.arange(1.0, 5.0).reshape(1, 1, 2, 2)          # [[1, 2], [3, 4]]
    >>> translate(x, torch.tensor([1]), torch.tensor([0]), pad=1).flatten().tolist()
    [3.0, 4.0, 0.0, 0.0]
    """
    batch, _, height, width = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))  # (B, C, H + 2p, W + 2p)
    rows = torch.arange(height, device=x.device)[None, :] + (dy + pad)[:, None]  # (B, H)
    cols = torch.arange(width, device=x.device)[None, :] + (dx + pad)[:, None]  # (B, W)
    examples = torch.arange(batch, device=x.device)[:, None, None]
    # Advanced indices around a slice: the indexed dimensions come first, (B, H, W, C).
    cropped = padded[examples, :, rows[:, :, None], cols[:, None, :]]
    return cropped.permute(0, 3, 1, 2).contiguous()


def batch_generator(seed: int, epoch: int, batch_index: int, *stream: int) -> torch.Generator:
    """A CPU generator that depends on ``(seed, epoch, batch_index, *stream)`` only (mixed by
    SeedSequence, so neighbouring tuples give unrelated streams). ``stream`` tells apart the users
    of one batch (the augmentation has none, the deficit's draws one)."""
    state = np.random.SeedSequence([seed, epoch, batch_index, *stream]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random translation by up to ``pad`` pixels (uniform over -pad..pad per axis and example,
    zero fill) and a left-right flip with probability 1/2, per example.

    Random numbers are drawn on the CPU from ``generator`` and moved to ``x``'s device.
    """
    if x.dim() != 4:
        raise ValueError(f"crop_flip expects image batches (B, C, H, W), got shape {tuple(x.shape)}")
    batch = x.shape[0]
    shifts = torch.randint(-pad, pad + 1, (2, batch), generator=generator).to(x.device)
    flips = (torch.rand(batch, generator=generator) < 0.5).to(x.device)
    return flip_lr(translate(x, shifts[0], shifts[1], pad), flips)
