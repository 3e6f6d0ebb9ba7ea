"""Every option of every config group composes and builds (new option files are picked up here)."""

from pathlib import Path

import hydra
import pytest
import pytorch_lightning as pl
import torch

from critical_periods.data.datamodule import DeficitDataModule
from critical_periods.build import build_datamodule
from critical_periods.tracking.loggers import build_loggers, logger_kinds
from critical_periods.record.metrics import RunRecordLogger

from conftest import CONF_DIR


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


FILE_DATA = {"mnist", "fashion_mnist", "cifar10", "cifar100"}  # need files: built, not loaded, here


def test_every_group_has_its_options():
    assert {"mnist1d", "digits", "synthetic", *FILE_DATA} <= set(options("data"))
    assert {"mlp", "conv1d", "simple_cnn", "all_cnn", "resnet18", "deep_linear"} <= set(options("model"))
    assert {"none", "blur", "vertical_flip", "label_permutation", "noise", "random_labels", "shuffled_pixels"} <= set(options("deficit"))


@pytest.mark.parametrize("option", options("data"))
def test_data_option_builds(make_cfg, option):
    cfg = make_cfg(f"data={option}", tiny=False)
    if option in FILE_DATA:
        datamodule = hydra.utils.instantiate(cfg.data, deficit=None, seed=0)
        assert isinstance(datamodule, DeficitDataModule)
        return
    datamodule = build_datamodule(cfg)
    x, y = next(iter(datamodule.train_dataloader()))
    assert x.shape == (cfg.data.batch_size, *datamodule.input_shape) and x.dtype == torch.float32
    assert int(y.max()) < datamodule.num_classes


@pytest.mark.parametrize("option", options("model"))
def test_model_option_builds_for_its_data(make_cfg, option):
    data = "mnist1d" if option in {"mlp", "conv1d", "deep_linear"} else "digits"
    cfg = make_cfg(f"model={option}", f"data={data}", tiny=False)
    datamodule = build_datamodule(cfg)
    model = hydra.utils.instantiate(cfg.model)(input_shape=datamodule.input_shape, num_classes=datamodule.num_classes)
    x, _ = next(iter(datamodule.train_dataloader()))
    assert model.eval()(x[:4]).shape == (4, datamodule.num_classes)


@pytest.mark.parametrize("option", options("deficit"))
def test_deficit_option_builds_and_binds(make_cfg, option):
    cfg = make_cfg(f"deficit={option}", tiny=False)
    datamodule = build_datamodule(cfg)
    assert datamodule.deficit.kind == option
    x, y = next(iter(datamodule.train_dataloader()))
    x_out, y_out = datamodule.deficit.transform(x, y)
    assert x_out.shape == x.shape and y_out.shape == y.shape


@pytest.mark.parametrize("option", options("optim"))
def test_optim_option_builds(make_cfg, option):
    cfg = make_cfg(f"optim={option}")
    optimizer = hydra.utils.instantiate(cfg.optim)([torch.nn.Parameter(torch.zeros(2))])
    assert isinstance(optimizer, torch.optim.Optimizer) and optimizer.param_groups[0]["lr"] == cfg.optim.lr


@pytest.mark.parametrize("option", options("trainer"))
def test_trainer_option_builds(make_cfg, option):
    cfg = make_cfg(f"trainer={option}")
    trainer = hydra.utils.instantiate(cfg.trainer, enable_progress_bar=False, max_epochs=1, logger=False)
    assert isinstance(trainer, pl.Trainer)


@pytest.mark.parametrize("option", options("logger"))
def test_logger_option_builds(make_cfg, option, tmp_path):
    cfg = make_cfg(f"logger={option}")
    if option == "none":
        assert not cfg.logger and logger_kinds(cfg) == []
        return
    assert logger_kinds(cfg) == [option]
    record, *lightning = build_loggers(cfg, tmp_path)
    assert isinstance(record, RunRecordLogger)
    # W&B mirrors the record itself (wandb_run); csv and tensorboard are Lightning's own loggers.
    assert [type(logger).__name__ for logger in lightning] == {
        "wandb": [], "csv": ["CSVLogger"], "tensorboard": ["EpochTensorBoardLogger"]}[option]


@pytest.mark.parametrize("option", options("probes"))
def test_probes_option_builds(make_cfg, option):
    cfg = make_cfg(f"probes={option}")
    if option == "none":
        assert not cfg.probes
        return
    assert isinstance(hydra.utils.instantiate(cfg.probes), pl.Callback)
