"""The DataModule of a seed group: every seed's own :class:`DeficitDataModule` (its split, data order,
augmentation and deficit draws, seeded as in its lone run), their batches stacked to ``(S, B, ...)``."""

from __future__ import annotations

from collections.abc import Iterator

import pytorch_lightning as pl
import torch

from critical_periods.data.datamodule import DeficitDataModule


class _Samplers:
    """Lightning calls ``loader.sampler.set_epoch(epoch)`` at every epoch start: pass it to every seed's."""

    def __init__(self, loaders: list) -> None:
        self.loaders = loaders

    def set_epoch(self, epoch: int) -> None:
        for loader in self.loaders:
            loader.sampler.set_epoch(epoch)


class StackedBatches:
    """The seeds' loaders in lockstep: batch ``i`` is every seed's batch ``i``, stacked."""

    def __init__(self, loaders: list) -> None:
        lengths = {len(loader) for loader in loaders}
        if len(lengths) != 1:
            raise ValueError(f"the seeds' loaders have different lengths {sorted(lengths)}")
        self.loaders = loaders
        self.sampler = _Samplers(loaders)
        self.batch_sampler = None

    def __len__(self) -> int:
        return len(self.loaders[0])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batches in zip(*self.loaders):
            xs, ys = zip(*batches)
            yield torch.stack(xs), torch.stack(ys)


class StackedDataModule(pl.LightningDataModule):
    """``datamodules``: one per seed, set up, of equal split sizes (a group differs only in seed)."""

    def __init__(self, datamodules: list[DeficitDataModule]) -> None:
        super().__init__()
        self.datamodules = datamodules
        self.deficit = datamodules[0].deficit  # the same kind and window for every seed

    def setup(self, stage: str | None = None) -> None:
        for datamodule in self.datamodules:
            datamodule.setup(stage)

    def _attach(self) -> None:
        # The seeds' modules decide what to draw from the trainer's epoch and loop: give them ours.
        for datamodule in self.datamodules:
            datamodule.trainer = self.trainer

    def train_dataloader(self) -> StackedBatches:
        self._attach()
        return StackedBatches([d.train_dataloader() for d in self.datamodules])

    def val_dataloader(self) -> list[StackedBatches]:
        self._attach()
        per_seed = [d.val_dataloader() for d in self.datamodules]
        return [StackedBatches(list(views)) for views in zip(*per_seed)]

    def test_dataloader(self) -> StackedBatches:
        self._attach()
        return StackedBatches([d.test_dataloader() for d in self.datamodules])

    @property
    def deficit_active(self) -> bool:
        return self.datamodules[0].deficit_active

    def is_deficit_view(self, dataloader_idx: int) -> bool:
        return self.datamodules[0].is_deficit_view(dataloader_idx)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if self.trainer is None:
            return batch
        x, y = batch
        xs, ys = x.unbind(0), y.unbind(0)
        done = [d.on_after_batch_transfer((xs[s], ys[s]), dataloader_idx) for s, d in enumerate(self.datamodules)]
        if all(dx is xs[s] and dy is ys[s] for s, (dx, dy) in enumerate(done)):
            return batch  # nothing drawn (no deficit, no augmentation): no copy
        new_xs, new_ys = zip(*done)
        return torch.stack(new_xs), torch.stack(new_ys)
