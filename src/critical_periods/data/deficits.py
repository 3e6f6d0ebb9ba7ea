"""Sensory deficits (Achille et al. 2019) as pure batch functions, and the window that schedules them.

Inputs are batches shaped ``(B, C, L)`` (1-D signals) or ``(B, C, H, W)`` (images), already
normalised by the data module (per-channel mean 0, std 1 on the training set). Every function
works on whatever device the batch is on; none touches the global RNG.

A :class:`Deficit` is active while ``onset <= epoch < onset + length``. The data module applies it
to training batches only (and to an extra "deficit view" of the validation set); evaluation always
sees clean data. A deficit that relabels individual training examples (:class:`RandomLabels`) gives
the data module a label per training example instead (:meth:`Deficit.training_labels`): batches do
not carry the identity of their examples, so the loader swaps the label table while it is active.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from critical_periods.vocabulary import DeficitKind


def blur(x: torch.Tensor, size: int) -> torch.Tensor:
    """Area-downsample every spatial axis to ``size``, then (bi)linearly upsample back.

    Images ``(B, C, H, W)`` go through ``size x size``; signals ``(B, C, L)`` through ``size`` samples.
    The paper blurs 32x32 CIFAR images through 8x8.

    >>> x = torch.arange(8.0).reshape(1, 1, 8)
    >>> blur(x, 2).shape
    torch.Size([1, 1, 8])
    """
    spatial = tuple(x.shape[2:])
    if len(spatial) == 1:
        small = F.interpolate(x, size=size, mode="area")
        return F.interpolate(small, size=spatial, mode="linear", align_corners=False)
    if len(spatial) == 2:
        small = F.interpolate(x, size=(size, size), mode="area")
        return F.interpolate(small, size=spatial, mode="bilinear", align_corners=False)
    raise ValueError(f"blur expects (B, C, L) or (B, C, H, W) batches, got shape {tuple(x.shape)}")


def vertical_flip(x: torch.Tensor) -> torch.Tensor:
    """Flip images upside down (the H axis); reverse 1-D signals (the L axis)."""
    if x.dim() in (3, 4):  # axis 2 is H for images and L for signals
        return torch.flip(x, dims=(2,))
    raise ValueError(f"vertical_flip expects (B, C, L) or (B, C, H, W) batches, got shape {tuple(x.shape)}")


def white_noise(x: torch.Tensor, generator: torch.Generator, mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
    """Replace the batch by Gaussian white noise with the data's mean and std (0 and 1 after
    normalisation), drawn on ``generator``'s device (the CPU for the data module's) and moved to ``x``'s."""
    noise = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype)
    return noise.to(x.device) * std + mean


def permute_labels(y: torch.Tensor, permutation: torch.Tensor) -> torch.Tensor:
    """Map class ``i`` to ``permutation[i]``: a fixed relabelling, not per-sample random labels."""
    return permutation.to(y.device)[y]


def random_labels(num_examples: int, num_classes: int, seed: int) -> torch.Tensor:
    """One label per example, uniform over the classes and independent of everything else, drawn
    from ``seed`` alone (Zhang et al. 2017's "random labels").

    >>> random_labels(6, 3, seed=0).tolist() == random_labels(6, 3, seed=0).tolist()
    True
    """
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(num_classes, (num_examples,), generator=generator)


def shuffle_positions(x: torch.Tensor, permutation: torch.Tensor) -> torch.Tensor:
    """Move the input at position ``permutation[k]`` to position ``k``, for every example and channel
    alike (positions: the L samples of a signal, the H x W pixels of an image, flattened row-major).

    >>> shuffle_positions(torch.tensor([[[10.0, 20.0, 30.0]]]), torch.tensor([2, 0, 1])).tolist()
    [[[30.0, 10.0, 20.0]]]
    """
    if x.dim() not in (3, 4):
        raise ValueError(f"shuffle_positions expects (B, C, L) or (B, C, H, W) batches, got shape {tuple(x.shape)}")
    flat = x.flatten(start_dim=2)
    return flat[:, :, permutation.to(x.device)].reshape(x.shape)


class Deficit:
    """A deficit applied during the epochs ``[onset, onset + length)``.

    Subclasses implement :meth:`transform` (``generator``: per-batch random draws, for the deficits
    that need them). :meth:`bind` is called once the data's shape is known, to validate options
    against it and to draw seeded state (a permutation).
    """

    kind = "abstract"
    # Whether the validation set has a "deficit view" (the same examples through the deficit).
    has_view = True

    def __init__(self, onset: int = 0, length: int = 0, seed: int = 0) -> None:
        for key, value in (("onset", onset), ("length", length)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"deficit.{key}={value!r} is not allowed: it must be a whole number of epochs >= 0")
        self.onset = onset
        self.length = length
        self.seed = seed

    @property
    def end(self) -> int:
        """First clean epoch after the window."""
        return self.onset + self.length

    def active(self, epoch: int) -> bool:
        return self.onset <= epoch < self.end

    def bind(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        """Check options against the data and prepare seeded state. Default: nothing to do."""

    def training_labels(self, y_train: torch.Tensor) -> torch.Tensor | None:
        """Labels of the training examples to train on while active, in place of ``y_train``; ``None``
        (the default) for deficits that act on batches through :meth:`transform` alone."""
        return None

    def transform(self, x: torch.Tensor, y: torch.Tensor,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(onset={self.onset}, length={self.length})"


class NoDeficit(Deficit):
    """Clean training. ``onset``/``length`` still set the schedule, so a control run can have the
    same number of epochs as the deficit runs it is compared with."""

    kind = DeficitKind.NONE
    has_view = False

    def active(self, epoch: int) -> bool:
        return False

    def transform(self, x, y, generator=None):
        return x, y


class Blur(Deficit):
    """Blur through ``size`` samples per spatial axis; ``size=None`` means a quarter of the input
    (8x8 for 32x32 images, 10 samples for 40-sample mnist1d signals)."""

    kind = DeficitKind.BLUR

    def __init__(self, onset: int = 0, length: int = 0, seed: int = 0, size: int | None = None) -> None:
        super().__init__(onset, length, seed)
        self.size = size

    def bind(self, input_shape, num_classes):
        spatial = input_shape[1:]
        smallest = min(spatial)
        if self.size is None:
            self.size = max(1, smallest // 4)
        if not isinstance(self.size, int) or not 1 <= self.size <= smallest:
            raise ValueError(
                f"deficit.size={self.size!r} is not allowed for inputs of shape {tuple(input_shape)}: "
                f"it must be a whole number between 1 and {smallest} (the smallest spatial size), or null "
                f"for a quarter of it"
            )

    def transform(self, x, y, generator=None):
        return blur(x, self.size), y


class VerticalFlip(Deficit):
    kind = DeficitKind.VERTICAL_FLIP

    def transform(self, x, y, generator=None):
        return vertical_flip(x), y


class LabelPermutation(Deficit):
    """A fixed permutation of the classes drawn from ``seed`` (it may leave some classes in place,
    as a uniform random permutation does)."""

    kind = DeficitKind.LABEL_PERMUTATION

    def bind(self, input_shape, num_classes):
        generator = torch.Generator().manual_seed(self.seed)
        self.permutation = torch.randperm(num_classes, generator=generator)

    def transform(self, x, y, generator=None):
        return x, permute_labels(y, self.permutation)


class Noise(Deficit):
    """White noise in place of the inputs. Draws come from the generator the data module passes per
    batch, seeded by ``(seed, epoch, batch index)`` and never the global RNG: switching the deficit on
    does not shift the random streams training uses, and a run resumed or branched at an epoch
    boundary sees the same noise as the uninterrupted one. Without a generator (a direct call), one
    seeded by ``seed`` is used, so such a call always returns the same noise."""

    kind = DeficitKind.NOISE

    def transform(self, x, y, generator=None):
        if generator is None:
            generator = torch.Generator().manual_seed(self.seed)
        return white_noise(x, generator), y


class RandomLabels(Deficit):
    """Every training example gets a label drawn uniformly once from ``seed`` (Zhang et al. 2017), the
    same in every epoch of the window; outside it, the true labels. Unlike :class:`LabelPermutation`
    (a relabelling of classes, learnable from the inputs), nothing about the input predicts the label.

    The labels belong to training examples, so the validation set has no deficit view (a held-out
    example has no random label to be scored against); validation and test stay clean, as for every
    deficit. The swap happens in the data module's training loader (:meth:`training_labels`), so
    :meth:`transform` leaves batches as they are.
    """

    kind = DeficitKind.RANDOM_LABELS
    has_view = False

    def bind(self, input_shape, num_classes):
        self.num_classes = num_classes
        self._labels: torch.Tensor | None = None

    def training_labels(self, y_train):
        if self._labels is None or len(self._labels) != len(y_train):
            self._labels = random_labels(len(y_train), self.num_classes, self.seed)
        return self._labels

    def transform(self, x, y, generator=None):
        return x, y


class ShuffledPixels(Deficit):
    """One fixed permutation of the input positions drawn from ``seed``, applied to every example
    (Zhang et al. 2017's "shuffled pixels"; all channels of a pixel move together). Training batches
    and the validation deficit view are shuffled during the window; validation and test stay clean."""

    kind = DeficitKind.SHUFFLED_PIXELS

    def bind(self, input_shape, num_classes):
        if len(input_shape) not in (2, 3):
            raise ValueError(
                f"deficit=shuffled_pixels is not allowed for inputs of shape {tuple(input_shape)}: it needs "
                f"signals (C, L) or images (C, H, W)"
            )
        positions = 1
        for size in input_shape[1:]:
            positions *= size
        self.permutation = torch.randperm(positions, generator=torch.Generator().manual_seed(self.seed))

    def transform(self, x, y, generator=None):
        return shuffle_positions(x, self.permutation), y
