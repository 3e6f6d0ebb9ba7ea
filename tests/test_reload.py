"""A trained model rebuilt from its run folder predicts exactly what the run measured."""

from __future__ import annotations

import pytest
import torch

from critical_periods.reload import RunNotLoadable, load_run
from critical_periods.train import train


def test_load_run_rebuilds_the_trained_model(make_cfg, tmp_path):
    summary = train(make_cfg("model.widths=[16,8]"))
    (tmp_path / "summary.json").unlink()  # the checkpoint alone carries the config
    model, datamodule, on_disk = load_run(tmp_path)
    assert on_disk is None and summary.status == "completed"
    assert not model.training
    with torch.no_grad():
        accuracy = (model(datamodule.x_test).argmax(1) == datamodule.y_test).float().mean().item()
    assert accuracy == pytest.approx(summary.test_acc, abs=1e-6)


def test_load_run_names_what_is_missing(tmp_path):
    with pytest.raises(RunNotLoadable, match="checkpoints/last.ckpt"):
        load_run(tmp_path)
