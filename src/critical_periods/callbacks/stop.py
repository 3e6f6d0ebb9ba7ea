"""Stop training at the next safe point once a stop is requested (``critical_periods.stopping``).

The safe points are batch starts: the resume checkpoint holds the last completed epoch, so work
after it is dropped on resume and the resumed run is bitwise the uninterrupted one."""

from __future__ import annotations

import pytorch_lightning as pl

from critical_periods.stopping import raise_if_stop_requested


class StopWhenRequested(pl.Callback):
    """Raises ``StopRequested`` at the first batch (train, validation or test) after a stop request."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        raise_if_stop_requested()

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        raise_if_stop_requested()

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        raise_if_stop_requested()
