"""In-memory batch iteration: the whole split is a tensor, batches are slices of a permutation.

A ``DataLoader`` over a ``TensorDataset`` collates every batch example by example; for the small
data sets used here that costs more than the training step itself (see benchmarks/pipeline.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch


class EpochPermutation:
    """The order of examples in one epoch: ``randperm`` seeded by ``(seed, epoch)``.

    Lightning calls ``set_epoch`` on a loader's ``sampler`` at every epoch start (as it does for
    distributed samplers), so the order depends on the epoch number alone: a resumed run sees the
    same batches as an uninterrupted one, and nothing draws from the global RNG.
    """

    def __init__(self, num_examples: int, seed: int, shuffle: bool) -> None:
        self.num_examples = num_examples
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.num_examples)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.num_examples, generator=generator)


class TensorBatches:
    """Iterate ``(x, y)`` batches of in-memory tensors, optionally shuffled per epoch.

    ``only_while``: a predicate asked at the start of each pass; while it is false the pass yields no
    batch at all (``len`` still counts the full pass, which is what Lightning sizes its loops by).
    ``labels_for_pass``: asked at the start of each pass for the labels to yield in place of ``y``
    (``None``: ``y``), e.g. a deficit's per-example random labels during its window.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        only_while: Callable[[], bool] | None = None,
        labels_for_pass: Callable[[], torch.Tensor | None] | None = None,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} examples but y has {len(y)}")
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.only_while = only_while
        self.labels_for_pass = labels_for_pass
        self.sampler = EpochPermutation(len(x), seed, shuffle)
        self.batch_sampler = None  # Lightning inspects both, as on a DataLoader

    def __len__(self) -> int:
        full, rest = divmod(len(self.x), self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.only_while is not None and not self.only_while():
            return
        labels = self.labels_for_pass() if self.labels_for_pass is not None else None
        y = self.y if labels is None else labels
        order = self.sampler.order()
        for i in range(len(self)):
            index = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield self.x[index], y[index]
