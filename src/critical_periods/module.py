"""The LightningModule: cross-entropy classification with an epoch-wise learning-rate schedule."""

from __future__ import annotations

from collections.abc import Callable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from critical_periods.record import metric_names as names
from critical_periods.record.metric_names import VAL_DEFICIT_ACC
from critical_periods.schedule import LrFactor


class ClassifierModule(pl.LightningModule):
    """Trains ``model`` (a plain ``nn.Module``, kept as ``self.model`` for the probes).

    Logged names, per epoch: ``train/loss``, ``train/acc`` (on the batches as trained, deficit included), ``val/loss``, ``val/acc`` (clean data),
    ``val_deficit/acc`` (the validation set through the deficit, while it is active),
    ``test/loss``, ``test/acc``, ``lr`` and ``deficit/active``. Evaluation accuracy uses torchmetrics.

    ``compiled_forward``: what training and evaluation call instead of ``model`` (e.g. the
    ``torch.compile``d forward from :func:`critical_periods.models.performance.prepare_model`); a
    plain function, so ``self.model`` stays the one module the probes and checkpoints see.
    """

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        optimizer: Callable[..., torch.optim.Optimizer],
        lr_factor: LrFactor,
        compiled_forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        if compiled_forward is model:  # prepare_model's answer when nothing is compiled
            compiled_forward = None
        if isinstance(compiled_forward, nn.Module):  # it would be registered, and saved, twice
            raise TypeError("compiled_forward must be a function (e.g. torch.compile(model.forward)), not a module")
        self.model = model
        self.compiled_forward = compiled_forward
        self.optimizer_factory = optimizer
        self.lr_factor = lr_factor
        self.diverged = False
        metric = lambda: MulticlassAccuracy(num_classes, average="micro")  # noqa: E731
        self.val_acc, self.val_deficit_acc, self.test_acc = metric(), metric(), metric()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.compiled_forward(x) if self.compiled_forward is not None else self.model(x)

    def _deficit_active(self) -> bool:
        datamodule = self.trainer.datamodule
        return bool(getattr(datamodule, "deficit_active", False))

    def _is_deficit_view(self, dataloader_idx: int) -> bool:
        # The data module knows which loader is which; it only yields that one while the deficit is on.
        is_view = getattr(self.trainer.datamodule, "is_deficit_view", None)
        return bool(is_view is not None and is_view(dataloader_idx))

    def on_train_epoch_start(self) -> None:
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        self.log_dict({names.LR: lr, names.DEFICIT_ACTIVE: float(self._deficit_active())}, on_step=False, on_epoch=True)
        self._loss_sum = torch.zeros((), device=self.device)
        self._correct = torch.zeros((), device=self.device, dtype=torch.long)
        self._examples = 0

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        # Accumulate on the device and log once per epoch: a self.log or a torchmetrics update per
        # step costs more than the step itself on small models (benchmarks/pipeline.py), and
        # checking the loss here would synchronise a GPU at every step.
        with torch.no_grad():
            self._loss_sum += loss * len(y)
            self._correct += (logits.argmax(dim=1) == y).sum()
        self._examples += len(y)
        return {"loss": loss}

    def on_train_epoch_end(self) -> None:
        if not self._examples:
            return
        mean_loss = self._loss_sum / self._examples
        self.log(names.TRAIN_LOSS, mean_loss)
        self.log(names.TRAIN_ACC, self._correct.float() / self._examples)
        if not torch.isfinite(mean_loss):
            # A non-finite loss poisons the weights for good: stop; train() records "diverged".
            self.diverged = True
            self.trainer.should_stop = True

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        x, y = batch
        logits = self(x)
        if self._is_deficit_view(dataloader_idx):
            self.val_deficit_acc(logits, y)
            self.log(VAL_DEFICIT_ACC, self.val_deficit_acc, add_dataloader_idx=False)
            return
        self.val_acc(logits, y)
        self.log(names.VAL_LOSS, F.cross_entropy(logits, y), add_dataloader_idx=False)
        self.log(names.VAL_ACC, self.val_acc, add_dataloader_idx=False)

    def test_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.test_acc(logits, y)
        self.log(names.TEST_LOSS, F.cross_entropy(logits, y))
        self.log(names.TEST_ACC, self.test_acc)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # LambdaLR saves its lambda's fields (LrFactor's restart epoch = this job's deficit end) and
        # would load them over ours: the schedule is always this job's own, also when the checkpoint
        # is another job's (a branch point shared by a sweep). Its epoch counter still comes from the checkpoint.
        for scheduler in checkpoint.get("lr_schedulers", []):
            if "lr_lambdas" in scheduler:
                scheduler["lr_lambdas"] = [None] * len(scheduler["lr_lambdas"])

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.lr_factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
