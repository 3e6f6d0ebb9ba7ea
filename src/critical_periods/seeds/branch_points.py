"""Branching for a seed group: every seed saves the branch points its lone run would save (its own
state, cut from the group's checkpoint, published with its own record), so later jobs and groups of
the sweep start from them exactly as from a lone run's (see ``critical_periods.sweep.branch_points``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Checkpoint

from critical_periods.callbacks.random_states import RandomStates, capture
from critical_periods.record.layout import CHECKPOINT_DIR
from critical_periods.seeds.checkpoint import seed_checkpoint
from critical_periods.sweep.branching import JobBranching


class GroupBranchPoints(Checkpoint):
    """:class:`~critical_periods.sweep.branch_points.BranchPoints` for every seed of a group: after
    an epoch in seed ``s``'s save points, seed ``s``'s checkpoint is saved (unless that state is in
    the store already) and published at the next epoch's start, when its record holds the epoch."""

    def __init__(self, branchings: list[JobBranching], run_dirs: list[Path], configs: list[dict[str, Any]],
                 callback_states: Callable[[int], dict[str, Any]] | None, saves: Callable[[int, int], bool]) -> None:
        super().__init__()
        self.plans = [b.plan for b in branchings]
        self.points = [b.plan.save_points() if b.plan is not None else {} for b in branchings]
        self.run_dirs = [Path(d) for d in run_dirs]
        self.configs = configs
        self.callback_states = callback_states or (lambda s: {RandomStates().state_key: capture()})
        self.saves = saves  # (s, epoch) -> whether seed s's state after this epoch is a real one (not diverged)
        self.pending_paths = [d / CHECKPOINT_DIR / "branch.ckpt.pending" for d in self.run_dirs]
        for path in self.pending_paths:
            path.unlink(missing_ok=True)  # left by a group killed before it could publish
        self._pending: dict[int, tuple[str, int]] = {}

    @staticmethod
    def needed(branchings: list[JobBranching]) -> bool:
        return any(b.plan is not None and b.plan.save_points() for b in branchings)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epochs = trainer.current_epoch + 1
        wanted = {s: self.points[s][epochs] for s in range(len(self.plans))
                  if epochs in self.points[s] and not self.plans[s].store.has(self.points[s][epochs])
                  and self.saves(s, trainer.current_epoch)}
        if not wanted:
            return
        group = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)
        for s, key in wanted.items():
            self.pending_paths[s].parent.mkdir(parents=True, exist_ok=True)
            torch.save(seed_checkpoint(group, s, self.callback_states(s), self.configs[s]), self.pending_paths[s])
            self._pending[s] = (key, epochs)

    def publish(self, trainer: pl.Trainer) -> None:
        if not trainer.is_global_zero:
            return
        for s, (key, epochs) in sorted(self._pending.items()):
            self.plans[s].store.publish(key, epochs, self.pending_paths[s], self.run_dirs[s])
        self._pending.clear()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.publish(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.publish(trainer)
