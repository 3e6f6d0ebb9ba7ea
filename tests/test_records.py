import json

import pytest
import torch

from critical_periods.record.metrics import RunRecordLogger, read_metrics

from critical_periods.record.summary import read_summary, write_json_atomic


def test_logger_appends_one_strict_json_object_per_call(tmp_path):
    logger = RunRecordLogger(tmp_path)
    logger.log_metrics({"train/loss": torch.tensor(0.5), "epoch": 0.0}, step=10)
    logger.log_metrics({"fisher/trace": float("nan"), "epoch": 1}, step=20)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        # an epoch's own numbers come at its last batch's index: the record counts steps taken
        {"step": 11, "train/loss": 0.5, "epoch": 0},
        {"step": 20, "fisher/trace": None, "epoch": 1},  # NaN is written as null
    ]
    assert read_metrics(tmp_path)[1]["step"] == 20


def test_steps_never_decrease_and_every_row_sits_on_the_epoch_axis(make_cfg, tmp_path):
    """A real run with early-step probes: ``step`` counts optimiser steps taken, in file order, and
    an end-of-epoch row (probe or the epoch's own numbers) sits at (epoch index + 1) epochs."""
    from critical_periods.train import train
    from critical_periods.record.epochs import record_epochs

    train(make_cfg("probes=fisher", "probes.probe_size=32", "probes.early_steps=2", "probes.early_until_step=3"))
    rows = [r for r in read_metrics(tmp_path) if r.get("epoch") is not None]
    steps = [r["step"] for r in rows]
    assert steps == sorted(steps) and len(set(steps)) > 3
    per_epoch = max(r["step"] for r in rows if r["epoch"] == 0)
    epochs = record_epochs(rows)
    for row, x in zip(rows, epochs):
        if row["step"] % per_epoch == 0:
            assert x == row["step"] // per_epoch, row
        else:  # the early probes, inside the first epoch
            assert 0 < x < 1 and row["epoch"] == 0, row


def test_summary_is_replaced_whole_and_a_failed_write_keeps_the_old_one(tmp_path):
    path = tmp_path / "summary.json"
    write_json_atomic(path, {"status": "completed", "final/test_error": 0.25})
    assert read_summary(tmp_path) == {"status": "completed", "final/test_error": 0.25}
    with pytest.raises(ValueError):
        write_json_atomic(path, {"status": "completed", "bad": float("nan")})  # not strict JSON
    assert read_summary(tmp_path)["final/test_error"] == 0.25
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temporary file left behind


def test_the_thread_count_is_a_summary_field_written_and_read_back(tmp_path):
    from critical_periods.record.summary import Summary, load_summary, write_summary
    from critical_periods.vocabulary import RunStatus as Status

    write_summary(tmp_path, Summary(status=Status.COMPLETED, fit_seconds=12.5, threads=3))
    assert read_summary(tmp_path)["threads"] == 3  # beside fit_seconds, not in `extra`
    loaded = load_summary(tmp_path)
    assert loaded.threads == 3 and loaded.extra == {}


def test_a_run_records_its_torch_thread_count(make_cfg):
    from critical_periods.train import train

    summary = train(make_cfg("threads=1"))
    assert summary.threads == 1 == torch.get_num_threads()
    assert read_summary(summary.config["paths"]["output_dir"])["threads"] == 1
