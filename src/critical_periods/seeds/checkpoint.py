"""Every seed's ``checkpoints/last.ckpt`` cut from the group's checkpoint, in the lone run's layout
(so a lone run resumes from it, and :func:`critical_periods.reload.load_run` reads it), and the
group's checkpoint stacked back from the seeds' ones when a group resumes.

A group's seeds train in lockstep, so the loop counters, the epoch, the global step and the lr
scheduler's state are the same for all of them; only the weights and the optimiser's per-parameter
state (momentum, Adam's moments) are stacked along the first axis, and are sliced here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from critical_periods.callbacks.checkpoint import ResumeCheckpoint
from critical_periods.callbacks.random_states import RandomStates, capture
from critical_periods.callbacks.run_config import CONFIG_IN_CHECKPOINT

MODEL_PREFIX = "model."


def _slice_state(state: dict[int, dict[str, Any]], s: int) -> dict[int, dict[str, Any]]:
    # Per-parameter tensors are stacked; 0-d ones (Adam's step) are shared.
    return {index: {key: value[s].clone() if torch.is_tensor(value) and value.dim() > 0 else value
                    for key, value in entry.items()}
            for index, entry in state.items()}


def _stack_state(states: list[dict[int, dict[str, Any]]]) -> dict[int, dict[str, Any]]:
    return {index: {key: torch.stack([st[index][key] for st in states]) if torch.is_tensor(value) and value.dim() > 0 else value
                    for key, value in entry.items()}
            for index, entry in states[0].items()}


def seed_checkpoint(group: dict[str, Any], s: int, callbacks: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Seed ``s``'s checkpoint from the group trainer's ``dump_checkpoint()``; ``callbacks``: the
    callback states its lone run would save."""
    out: dict[str, Any] = {}
    for key, value in group.items():
        if key == "state_dict":
            out[key] = {name: t[s].clone() for name, t in value.items() if name.startswith(MODEL_PREFIX)}
        elif key == "optimizer_states":
            out[key] = [{**o, "state": _slice_state(o["state"], s)} for o in value]
        elif key == "callbacks":
            out[key] = callbacks
        else:
            out[key] = value
    out[CONFIG_IN_CHECKPOINT] = config
    return out


def group_checkpoint(seeds: list[dict[str, Any]]) -> dict[str, Any]:
    """The group's checkpoint from its seeds' (saved after the same epoch): what ``Trainer.fit(ckpt_path=)`` loads."""
    first = seeds[0]
    out = {key: value for key, value in first.items() if key not in ("callbacks", CONFIG_IN_CHECKPOINT)}
    out["state_dict"] = {name: torch.stack([c["state_dict"][name] for c in seeds]) for name in first["state_dict"]}
    out["optimizer_states"] = [
        {**o, "state": _stack_state([c["optimizer_states"][i]["state"] for c in seeds])}
        for i, o in enumerate(first["optimizer_states"])
    ]
    out["callbacks"] = {}
    return out


class GroupCheckpoint(pl.callbacks.Checkpoint):
    """:class:`ResumeCheckpoint` for every seed of a group: the same timing (every ``every_n_epochs``-th
    epoch once ``min_seconds`` have passed, and the last), the same pending file promoted at the next
    epoch's start, one file per seed. A ``Checkpoint`` subclass so Lightning runs it where it runs
    ResumeCheckpoint, after the module's epoch-end hook."""

    def __init__(self, run_dirs: list[Path], configs: list[dict[str, Any]], every_n_epochs: int, min_seconds: float,
                 save_seed: Callable[[int, int], bool]) -> None:
        super().__init__()
        self.lone = [ResumeCheckpoint(run_dir, every_n_epochs, min_seconds) for run_dir in run_dirs]
        self.configs = configs
        self.every_n_epochs = every_n_epochs
        self.min_seconds = min_seconds
        self.save_seed = save_seed  # (s, epoch) -> whether seed s saves after this epoch
        self._last_save = time.monotonic()

    def on_train_start(self, trainer, pl_module) -> None:
        self._last_save = time.monotonic()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        epoch = trainer.current_epoch
        last_epoch = epoch + 1 >= trainer.max_epochs
        if trainer.sanity_checking or (epoch + 1) % self.every_n_epochs:
            return
        if not last_epoch and time.monotonic() - self._last_save < self.min_seconds:
            return
        group = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)
        for s, lone in enumerate(self.lone):
            if not self.save_seed(s, epoch):
                continue
            lone.pending_path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(seed_checkpoint(group, s, self.callback_states(s), self.configs[s]), lone.pending_path)
        self._last_save = time.monotonic()

    def callback_states(self, s: int) -> dict[str, Any]:
        """The callback states seed ``s``'s lone run saves with a checkpoint."""
        lone = self.lone[s]
        lone.best_model_path = str(lone.final_path)  # what the lone run's ModelCheckpoint records
        return {RandomStates().state_key: capture(), lone.state_key: lone.state_dict()}

    def promote(self) -> None:
        for lone in self.lone:
            if lone.pending_path.exists():
                os.replace(lone.pending_path, lone.final_path)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.promote()

    def on_train_end(self, trainer, pl_module) -> None:
        self.promote()

