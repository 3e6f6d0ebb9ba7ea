"""Saves the branch points other jobs of the sweep will start from (see ``critical_periods.sweep``)."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Checkpoint

from critical_periods.sweep.branch_store import BranchStore
from critical_periods.record.layout import CHECKPOINT_DIR


class BranchPoints(Checkpoint):
    """After the epochs in ``points`` (epochs trained -> state key), saves a checkpoint and publishes
    it with the run's record as a branch point of ``store``, unless that state is there already.

    A ``Checkpoint`` subclass, so Lightning calls it where it calls the resume checkpoint: after the
    module's epoch-end hook, so the saved state is exactly the one a resume would see. The epoch's
    train row reaches ``metrics.jsonl`` only after this hook, so the point is published at the next
    epoch's start (or the end of training), as ``ResumeCheckpoint`` promotes its file.
    """

    def __init__(self, store: BranchStore, points: dict[int, str], run_dir: Path | str) -> None:
        super().__init__()
        self.store = store
        self.points = dict(points)
        self.run_dir = Path(run_dir)
        self.pending_path = self.run_dir / CHECKPOINT_DIR / "branch.ckpt.pending"
        self.pending_path.unlink(missing_ok=True)  # left by a run killed before it could publish
        self._pending: tuple[str, int] | None = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epochs = trainer.current_epoch + 1
        key = self.points.get(epochs)
        if key is None or self.store.has(key):
            return
        trainer.save_checkpoint(self.pending_path)
        self._pending = (key, epochs)

    def publish(self, trainer: pl.Trainer) -> None:
        if self._pending is None or not trainer.is_global_zero:
            return
        key, epochs = self._pending
        self._pending = None
        self.store.publish(key, epochs, self.pending_path, self.run_dir)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.publish(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.publish(trainer)
