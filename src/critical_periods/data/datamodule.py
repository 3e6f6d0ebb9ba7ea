"""The DeficitDataModule: in-memory splits, normalised, with a deficit switched on and off by epoch."""

from __future__ import annotations

from collections.abc import Callable

import pytorch_lightning as pl
import torch

from critical_periods.data.arrays import DataArrays
from critical_periods.data.augment import batch_generator, crop_flip
from critical_periods.data.batches import TensorBatches
from critical_periods.data.deficits import Deficit, NoDeficit

# Validation loaders: index 0 is the clean view, index 1 the same examples through the deficit
# (only when there is a deficit). Callers ask is_deficit_view rather than compare indices.
CLEAN, DEFICIT_VIEW = 0, 1
# Streams of batch_generator besides the augmentation's: the deficit's draws on training batches and on
# the validation deficit view.
TRAIN_DEFICIT_STREAM, VIEW_DEFICIT_STREAM = 1, 2


def seeded_split(num_examples: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(kept, held_out)`` with ``round(fraction * n)`` held out, drawn from ``seed``."""
    order = torch.randperm(num_examples, generator=torch.Generator().manual_seed(seed))
    held = round(fraction * num_examples)
    return order[held:], order[:held]


def stratified_pick(y: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """``size`` indices spread as evenly as possible over the classes (round-robin over classes,
    each class in a seeded random order)."""
    if not 0 < size <= len(y):
        raise ValueError(f"probe set size {size} is not allowed: it must be between 1 and {len(y)} (the training set)")
    generator = torch.Generator().manual_seed(seed)
    per_class = []
    for c in torch.unique(y):
        members = torch.nonzero(y == c).flatten()
        per_class.append(members[torch.randperm(len(members), generator=generator)])
    # Interleave: the k-th example of every class before the (k+1)-th of any.
    longest = max(len(m) for m in per_class)
    rounds = [m[k] for k in range(longest) for m in per_class if k < len(m)]
    return torch.stack(rounds[:size])


class DeficitDataModule(pl.LightningDataModule):
    """Holds a data set as tensors and applies ``deficit`` to training batches during its window.

    Args:
        source: a callable returning :class:`DataArrays` (a Hydra ``_partial_`` loader).
        deficit: the deficit and its window; ``None`` for clean training.
        batch_size: training batch size.
        val_fraction: share of the training data held out for validation (seeded).
        test_fraction: share held out for testing when the data set has no official test set.
        eval_batch_size: batch size for validation and test (no gradients, so larger).
        seed: split seed (the run's seed); the shuffling order and the augmentation draws derive from it too.
        augment: random crops (4-pixel zero padding of the normalised image) and left-right flips of
            training batches, on the device, before the deficit (:mod:`critical_periods.data.augment`).
            Images only. Evaluation and the probe set stay clean.
    """

    def __init__(
        self,
        source: Callable[[], DataArrays],
        deficit: Deficit | None = None,
        batch_size: int = 128,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        eval_batch_size: int = 1024,
        seed: int = 0,
        augment: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(augment, bool):
            raise ValueError(f"data.augment={augment!r} is not allowed: it must be true or false")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"data.batch_size={batch_size!r} is not allowed: it must be a whole number >= 1")
        for key, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 < value < 1.0:
                raise ValueError(f"data.{key}={value!r} is not allowed: it must be strictly between 0 and 1")
        self.source = source
        self.deficit = deficit if deficit is not None else NoDeficit()
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.augment = augment
        # (epoch, index) of the next training and deficit-view batch: their random draws depend on both.
        self._positions: dict[str, tuple[int, int]] = {}
        self._ready = False

    def setup(self, stage: str | None = None) -> None:
        if self._ready:  # train() calls this before fit to learn the shapes; Lightning calls it again
            return
        arrays = self.source()
        x, y = arrays.x_train, arrays.y_train
        if arrays.x_test is None:
            keep, held = seeded_split(len(x), self.test_fraction, self.seed)
            x_test, y_test = x[held], y[held]
            x, y = x[keep], y[keep]
        else:
            x_test, y_test = arrays.x_test, arrays.y_test
        keep, held = seeded_split(len(x), self.val_fraction, self.seed + 1)
        x_train, y_train, x_val, y_val = x[keep], y[keep], x[held], y[held]

        # Per-channel statistics of the training split only, so nothing leaks from val/test.
        reduce_dims = [0] + list(range(2, x_train.dim()))
        mean = x_train.mean(dim=reduce_dims, keepdim=True)
        std = x_train.std(dim=reduce_dims, keepdim=True).clamp_min(1e-8)
        normalise = lambda t: ((t - mean) / std).float().contiguous()  # noqa: E731
        self.x_train, self.y_train = normalise(x_train), y_train
        self.x_val, self.y_val = normalise(x_val), y_val
        self.x_test, self.y_test = normalise(x_test), y_test
        self.num_classes = arrays.num_classes
        self.input_shape = tuple(self.x_train.shape[1:])
        if self.augment and len(self.input_shape) != 3:
            raise ValueError(
                f"data.augment=true is not allowed for inputs of shape {self.input_shape}: random crops and "
                f"flips need images (C, H, W); set data.augment=false"
            )
        if len(self.x_train) < self.batch_size:
            raise ValueError(
                f"data.batch_size={self.batch_size} is not allowed: the training split has only "
                f"{len(self.x_train)} examples; lower it"
            )
        self.deficit.bind(self.input_shape, self.num_classes)
        self._ready = True

    # -- loaders -------------------------------------------------------------------------------
    def train_dataloader(self) -> TensorBatches:
        # Every step sees batch_size examples (the remainder of each shuffled epoch is left out): the
        # break-even point depends on the batch size, and a small remainder batch would be the step
        # just before every epoch-end probe (a 16-example step on mnist1d at batch 128).
        return TensorBatches(self.x_train, self.y_train, self.batch_size, shuffle=True, drop_last=True, seed=self.seed,
                             labels_for_pass=self._training_labels)

    def _training_labels(self) -> torch.Tensor | None:
        # Asked at the start of each training pass: a per-example relabelling (random labels) while
        # the deficit is active, else the true labels.
        return self.deficit.training_labels(self.y_train) if self.deficit_active else None

    def val_dataloader(self) -> list[TensorBatches]:
        clean = TensorBatches(self.x_val, self.y_val, self.eval_batch_size)
        if not self.deficit.has_view:
            return [clean]
        # Outside the window the deficit view is the clean view again: yield nothing rather than
        # pay a forward pass over the validation set that nobody logs.
        view = TensorBatches(self.x_val, self.y_val, self.eval_batch_size, only_while=lambda: self.deficit_active)
        return [clean, view]

    def test_dataloader(self) -> TensorBatches:
        return TensorBatches(self.x_test, self.y_test, self.eval_batch_size)

    # -- the deficit -----------------------------------------------------------------------------
    @property
    def deficit_active(self) -> bool:
        return self.trainer is not None and self.deficit.active(self.trainer.current_epoch)

    def is_deficit_view(self, dataloader_idx: int) -> bool:
        """Whether validation loader ``dataloader_idx`` is the validation set through the deficit."""
        return dataloader_idx == DEFICIT_VIEW and self.deficit.has_view

    def _batch_position(self, loop: str, epoch: int) -> tuple[int, int]:
        """``(epoch, index)`` of this batch within ``loop``'s pass of ``epoch`` (counted from 0)."""
        last_epoch, index = self._positions.get(loop, (-1, -1))
        index = index + 1 if epoch == last_epoch else 0
        self._positions[loop] = (epoch, index)
        return epoch, index

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        # Runs on the device, after the transfer: augmentation, then the deficit, on training
        # batches. Evaluation stays clean except the deficit view. Random draws come from generators
        # seeded by (seed, epoch, batch index, stream): a resumed or branched run draws the same.
        trainer = self.trainer
        if trainer is None:
            return batch
        if trainer.training:
            epoch, index = self._batch_position("train", trainer.current_epoch)
            if self.augment:
                x, y = batch
                batch = crop_flip(x, batch_generator(self.seed, epoch, index)), y
            if not self.deficit_active:
                return batch
            return self.deficit.transform(*batch, generator=batch_generator(self.seed, epoch, index, TRAIN_DEFICIT_STREAM))
        in_validation = trainer.validating or trainer.sanity_checking
        if in_validation and self.is_deficit_view(dataloader_idx) and self.deficit_active:
            loop = "sanity_check" if trainer.sanity_checking else "deficit_view"  # a resumed run checks again
            epoch, index = self._batch_position(loop, trainer.current_epoch)
            return self.deficit.transform(*batch, generator=batch_generator(self.seed, epoch, index, VIEW_DEFICIT_STREAM))
        return batch

    def probe_set(self, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Clean, normalised training examples, stratified by true class and chosen by ``seed``. A
        deficit that relabels examples (random labels) labels them as it does in training, so the
        probes measure the task the network fits."""
        index = stratified_pick(self.y_train, size, seed)
        relabelled = self.deficit.training_labels(self.y_train)
        labels = self.y_train if relabelled is None else relabelled
        return self.x_train[index], labels[index]

    def gradient_batches(self, count: int, batch_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` disjoint mini-batches of ``batch_size`` clean, normalised training examples, chosen
        by ``seed`` (a seeded permutation, cut into consecutive batches): inputs (count * batch_size,
        ...) and labels, batch l at rows ``[l * batch_size, (l + 1) * batch_size)``."""
        needed, available = count * batch_size, len(self.y_train)
        if needed > available:
            raise ValueError(
                f"probes.covariance.batches={count} x probes.covariance.batch_size={batch_size} = {needed} "
                f"examples is not allowed: the training set has {available}; lower one of them"
            )
        index = torch.randperm(available, generator=torch.Generator().manual_seed(seed))[:needed]
        return self.x_train[index], self.y_train[index]
