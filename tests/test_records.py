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
        {"step": 10, "train/loss": 0.5, "epoch": 0},
        {"step": 20, "fisher/trace": None, "epoch": 1},  # NaN is written as null
    ]
    assert read_metrics(tmp_path)[1]["step"] == 20


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
