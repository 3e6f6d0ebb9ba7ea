"""The LightningModule of a seed group: :class:`~critical_periods.module.ClassifierModule`'s
training, evaluation and logging, done for S seeds at once on batches shaped ``(S, B, ...)``.

Every metric of seed ``s`` is logged under ``seed_tag(s) + name``; :class:`~critical_periods.seeds.fanout.SeedLoggers`
strips the tag and hands each seed the rows its lone run would log. Names without a tag (``lr``,
``deficit/active``) are the same for every seed of a group and go to all of them.
"""

from __future__ import annotations

from collections.abc import Callable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from critical_periods.record.metric_names import DEFICIT_ACTIVE, LR, TEST_ACC, TEST_LOSS, TRAIN_ACC, TRAIN_LOSS, VAL_ACC, VAL_DEFICIT_ACC, VAL_LOSS
from critical_periods.schedule import LrFactor
from critical_periods.seeds.stacked import group_size, stacked_forward

TAG_END = "|"  # metric names never hold it


def seed_tag(s: int) -> str:
    return f"seed{s}{TAG_END}"


def per_seed_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of every seed's batch: ``(S, B, C)``, ``(S, B)`` -> ``(S,)``."""
    seeds, batch = y.shape
    return F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(seeds, batch).mean(dim=1)


class StackedClassifier(pl.LightningModule):
    """Trains ``model`` (from :func:`~critical_periods.seeds.stacked.stack_models`) with one optimiser
    over its stacked parameters and the lone runs' shared lr schedule (a group's seeds share every
    other config value, so the schedule too).

    ``diverged[s]``: the epoch in which seed ``s``'s training loss became non-finite (its lone run
    would have stopped there), else ``None``. Training stops once every seed has diverged.
    """

    def __init__(self, model: nn.Module, num_classes: int, optimizer: Callable[..., torch.optim.Optimizer],
                 lr_factor: LrFactor) -> None:
        super().__init__()
        self.model = model
        self.seeds = group_size(model)
        self.optimizer_factory = optimizer
        self.lr_factor = lr_factor
        self.diverged: list[int | None] = [None] * self.seeds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return stacked_forward(self.model, x)

    def _datamodule_says(self, name: str, *args) -> bool:
        attribute = getattr(self.trainer.datamodule, name, None)
        if attribute is None:
            return False
        return bool(attribute(*args) if callable(attribute) else attribute)

    def on_train_epoch_start(self) -> None:
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        self.log_dict({LR: lr, DEFICIT_ACTIVE: float(self._datamodule_says("deficit_active"))}, on_step=False, on_epoch=True)
        self._loss_sum = torch.zeros(self.seeds, device=self.device)
        self._correct = torch.zeros(self.seeds, device=self.device, dtype=torch.long)
        self._examples = 0

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        losses = per_seed_cross_entropy(logits, y)
        batch_size = y.shape[1]
        with torch.no_grad():
            self._loss_sum += losses * batch_size
            self._correct += (logits.argmax(dim=2) == y).sum(dim=1)
        self._examples += batch_size
        # The sum's gradient with respect to seed s's parameters is seed s's own loss's gradient.
        return {"loss": losses.sum(), "seed_losses": losses.detach()}

    def on_train_epoch_end(self) -> None:
        if not self._examples:
            return
        mean_loss = self._loss_sum / self._examples
        accuracy = self._correct.float() / self._examples
        epoch = self.trainer.current_epoch
        for s in range(self.seeds):
            if self.diverged[s] is not None:
                continue
            self.log(seed_tag(s) + TRAIN_LOSS, mean_loss[s])
            self.log(seed_tag(s) + TRAIN_ACC, accuracy[s])
            if not torch.isfinite(mean_loss[s]):
                self.diverged[s] = epoch  # the lone run stops after this epoch; the record says "diverged"
        if all(d is not None for d in self.diverged):
            self.trainer.should_stop = True

    def _evaluate(self, batch, acc_name: str, loss_name: str | None) -> None:
        x, y = batch
        logits = self(x)
        batch_size = y.shape[1]  # Lightning would take S from the stacked batch
        # Accuracy as a batch-size-weighted mean over the epoch's batches: the micro accuracy the lone
        # run's torchmetrics object computes, without S metric objects' per-batch updates.
        accuracy = (logits.argmax(dim=2) == y).float().mean(dim=1)
        losses = per_seed_cross_entropy(logits, y) if loss_name is not None else None
        for s in range(self.seeds):
            if losses is not None:
                self.log(seed_tag(s) + loss_name, losses[s], add_dataloader_idx=False, batch_size=batch_size)
            self.log(seed_tag(s) + acc_name, accuracy[s], add_dataloader_idx=False, batch_size=batch_size)

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        if self._datamodule_says("is_deficit_view", dataloader_idx):
            self._evaluate(batch, VAL_DEFICIT_ACC, None)
        else:
            self._evaluate(batch, VAL_ACC, VAL_LOSS)

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, TEST_ACC, TEST_LOSS)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # As ClassifierModule: the schedule's lambda is always this group's own, never the checkpoint's.
        for scheduler in checkpoint.get("lr_schedulers", []):
            if "lr_lambdas" in scheduler:
                scheduler["lr_lambdas"] = [None] * len(scheduler["lr_lambdas"])

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.model.parameters())
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.lr_factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
