"""Several loggers at once (``logger=[csv,tensorboard]``, ``logger=[wandb,csv]``), each with the
resolved config as hyperparameters, TensorBoard against epochs completed: checked by reading back
what each logger wrote (the CSV files, the TensorBoard event file, the offline W&B run)."""

from __future__ import annotations

import csv
import struct
from collections import defaultdict
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf
from tensorboardX.proto import event_pb2, plugin_hparams_pb2

from critical_periods.tracking.loggers import build_loggers, logger_kinds
from critical_periods.record.metrics import read_metrics
from critical_periods.train import train
from critical_periods.config.validation import ConfigError

from wandb_records import read_offline_run

PROBED = ("probes=fisher", "probes.probe_size=32", "probes.early_steps=2", "probes.early_until_step=3",
          "deficit.length=1", "schedule.epochs_after_deficit=2")


def tensorboard_events(folder: Path) -> list[event_pb2.Event]:
    """The events of a TensorBoard folder, file by file in name order, as TensorBoard reads them
    (TFRecord framing: length u64, its CRC u32, data, CRC u32)."""
    events = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            events.append(event_pb2.Event.FromString(data[pos + 12:pos + 12 + length]))
            pos += 12 + length + 4
    return events


def scalars(events: list[event_pb2.Event]) -> dict[str, list[tuple[int, float]]]:
    by_tag = defaultdict(list)
    for event in events:
        for value in event.summary.value:
            if value.HasField("simple_value"):
                by_tag[value.tag].append((event.step, value.simple_value))
    return dict(by_tag)


def tensorboard_hparams(events: list[event_pb2.Event]) -> dict[str, object]:
    for event in events:
        for value in event.summary.value:
            if value.tag == "_hparams_/session_start_info":
                plugin = plugin_hparams_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                return {key: getattr(v, v.WhichOneof("kind")) for key, v in plugin.session_start_info.hparams.items()}
    raise AssertionError("no hparams in the TensorBoard file")


def test_csv_and_tensorboard_together_each_with_the_config_and_the_epoch_axis(make_cfg, tmp_path):
    summary = train(make_cfg("logger=[csv,tensorboard]", *PROBED))
    assert summary.status == "completed"
    rows = read_metrics(tmp_path)

    # CSV: every record metric, and the resolved config as hparams.yaml
    with open(tmp_path / "csv" / "version_0" / "metrics.csv") as f:
        table = list(csv.DictReader(f))
    assert [float(r["train/loss"]) for r in table if r["train/loss"]] == [r["train/loss"] for r in rows if "train/loss" in r]
    hparams = yaml.safe_load((tmp_path / "csv" / "version_0" / "hparams.yaml").read_text())
    assert hparams["optim"]["lr"] == 0.05 and hparams["deficit"]["length"] == 1 and hparams["model"]["widths"] == [32]
    assert hparams == summary.config

    # TensorBoard: the config in the HPARAMS tab; epochs completed on the step axis
    events = tensorboard_events(tmp_path / "tensorboard" / "version_0")
    assert tensorboard_hparams(events)["optim/lr"] == 0.05
    assert yaml.safe_load((tmp_path / "tensorboard" / "version_0" / "hparams.yaml").read_text()) == summary.config
    charts = scalars(events)
    assert [step for step, _ in charts["train/loss"]] == [1, 2, 3]
    assert [value for _, value in charts["val/acc"]] == pytest.approx([r["val/acc"] for r in rows if "val/acc" in r])
    assert [step for step, _ in charts["fisher/trace"]] == [0, 1, 2, 3]  # the initial weights, then each epoch's end
    steps_per_epoch = next(r["step"] for r in rows if "train/loss" in r)  # steps taken at the end of epoch 0
    early = [r["step"] for r in rows if "fisher/trace" in r and 0 < r["step"] < steps_per_epoch]
    assert early and [step for step, _ in charts["by_step/fisher/trace"]] == early  # inside epoch 0: by step
    assert [step for step, _ in charts["final/test_error"]] == [3]
    assert "epoch" not in charts  # the axis says it


def test_wandb_and_csv_together(make_cfg, tmp_path):
    summary = train(make_cfg("logger=[wandb,csv]"))
    assert summary.status == "completed"
    (folder,) = (tmp_path / "wandb").glob("offline-run-*")
    (log,) = folder.glob("run-*.wandb")
    run = read_offline_run(log)
    assert run.summary["final/test_error"] == summary.test_error and run.config["optim"]["lr"] == 0.05
    assert (tmp_path / "csv" / "version_0" / "metrics.csv").stat().st_size > 0
    assert yaml.safe_load((tmp_path / "csv" / "version_0" / "hparams.yaml").read_text())["seed"] == 0


def test_logger_options_reach_the_logger_and_an_unknown_logger_is_named(make_cfg, tmp_path):
    cfg = make_cfg("logger=[csv,tensorboard]", "logger.csv.name=table", "+logger.tensorboard.prefix=tb")
    assert logger_kinds(cfg) == ["csv", "tensorboard"]
    _record, table, board = build_loggers(cfg, tmp_path)
    assert (table.name, Path(table.log_dir).parent) == ("table", tmp_path / "table")
    assert board._prefix == "tb" and board.name == "tensorboard"
    cfg = make_cfg("logger=csv")
    OmegaConf.set_struct(cfg, False)
    cfg.logger.mlflow = {}
    with pytest.raises(ValueError, match=r"logger.mlflow is not allowed: the loggers are wandb, csv, tensorboard"):
        logger_kinds(cfg)
    with pytest.raises(ConfigError, match="logger.mlflow is not allowed"):
        train(cfg)
