"""Rebuild a trained model from its run folder, for analysis in a notebook:

>>> from critical_periods.reload import load_run                     # doctest: +SKIP
>>> model, datamodule, summary = load_run("multirun/removal/deficit.length=40,seed=0")  # doctest: +SKIP
>>> model(datamodule.x_test[:5]).argmax(1)                          # doctest: +SKIP

The config comes from the checkpoint itself (every checkpoint stores the resolved config it was
trained with), or from ``summary.json`` for checkpoints written before that; the weights from
``checkpoints/last.ckpt`` (the state after the last epoch trained: the final model of a completed
run). The data module is set up exactly as in training (same split, same normalisation), on the CPU.
"""

from __future__ import annotations

from pathlib import Path
import hydra
import torch
from omegaconf import OmegaConf
from torch import nn

from critical_periods.callbacks.run_config import CONFIG_IN_CHECKPOINT
from critical_periods.data.datamodule import DeficitDataModule
from critical_periods.record.summary import Summary, load_summary
from critical_periods.record.resume import last_checkpoint

# The LightningModule keeps the network as ``self.model``: its keys in the state dict start with this.
MODEL_PREFIX = "model."


class RunNotLoadable(ValueError):
    """The folder has no checkpoint or no config to rebuild the model from; the message says which."""


def load_run(run_dir: Path | str, map_location: str | torch.device = "cpu") -> tuple[nn.Module, DeficitDataModule, Summary | None]:
    """``(model in eval mode with the checkpoint's weights, data module set up, its Summary)``."""
    run_dir = Path(run_dir)
    checkpoint_path = last_checkpoint(run_dir)
    if checkpoint_path is None:
        raise RunNotLoadable(f"{run_dir} has no checkpoints/last.ckpt to load the weights from (was checkpoint.every_n_epochs=0?)")
    checkpoint = torch.load(checkpoint_path, map_location=map_location, weights_only=False)
    summary = load_summary(run_dir)
    config = checkpoint.get(CONFIG_IN_CHECKPOINT) or (summary.config if summary is not None else None)
    if not config:
        raise RunNotLoadable(f"{run_dir}: neither {checkpoint_path.name} nor summary.json holds the run's config")
    cfg = OmegaConf.create(config)

    deficit = hydra.utils.instantiate(cfg.deficit)
    datamodule = hydra.utils.instantiate(cfg.data, deficit=deficit, seed=cfg.seed)
    datamodule.setup("fit")
    model = hydra.utils.instantiate(cfg.model)(input_shape=datamodule.input_shape, num_classes=datamodule.num_classes)
    weights = {k[len(MODEL_PREFIX):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(MODEL_PREFIX)}
    model.load_state_dict(weights)
    model.eval()
    return model, datamodule, summary
