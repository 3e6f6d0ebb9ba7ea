"""Every JSON-lines file of a run goes through record/jsonl.py: a line torn by a kill or a full disk
is skipped by readers and trimmed on resume, whichever file it is in."""

from __future__ import annotations

import json

import pytest

from critical_periods.record.jsonl import append_row, read_rows, read_rows_and_torn, trim_rows
from critical_periods.record.layout import JSONL_FILES, METRICS_FILE, STIFFNESS_FILE
from critical_periods.record.metrics import read_metrics
from critical_periods.record.resume import trim_metrics, trim_stiffness

# What a resume after epoch 1 does to each JSON-lines file (a new file must say how it is trimmed).
RESUME_TRIMS = {
    METRICS_FILE: lambda run_dir: trim_metrics(run_dir, 1),
    STIFFNESS_FILE: lambda run_dir: trim_stiffness(run_dir, 2),  # keeps epochs < 2: the resumed run logs epoch 2 on
}
ROWS = {
    METRICS_FILE: [{"step": 5, "epoch": 0, "train/loss": 1.0}, {"step": 10, "epoch": 1, "train/loss": 0.5}],
    STIFFNESS_FILE: [{"step": 5, "epoch": 0, "matrix": [[1.0, None], [None, 1.0]]},
                     {"step": 10, "epoch": 1, "matrix": [[0.5, 0.1], [0.1, 0.5]]}],
}


def test_every_jsonl_file_of_a_run_has_a_resume_trim():
    assert set(RESUME_TRIMS) == set(JSONL_FILES) == set(ROWS)


@pytest.mark.parametrize("name", JSONL_FILES)
def test_a_torn_last_line_is_trimmed_on_resume_and_appending_goes_on(tmp_path, name):
    path = tmp_path / name
    for row in ROWS[name]:
        append_row(path, row)
    with open(path, "a") as f:
        f.write(json.dumps({"step": 15, "epoch": 2, "x": 1})[:9])  # killed mid-write
    assert read_rows(path) == ROWS[name]  # readers skip it
    RESUME_TRIMS[name](tmp_path)
    assert path.read_text().endswith("\n") and read_rows_and_torn(path) == (ROWS[name], 0)
    append_row(path, {"step": 15, "epoch": 2})
    assert read_rows(path) == [*ROWS[name], {"step": 15, "epoch": 2}]


def test_trim_keeps_rows_byte_for_byte_and_restores_a_lost_newline(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"epoch": 0,  "a": 1.50}\n{"epoch": 1, "a": 2}')  # odd spacing; last newline lost
    assert trim_rows(path, lambda row: True) == 0
    assert path.read_text() == '{"epoch": 0,  "a": 1.50}\n{"epoch": 1, "a": 2}\n'
    assert trim_rows(path, lambda row: row["epoch"] < 1) == 1
    assert path.read_text() == '{"epoch": 0,  "a": 1.50}\n'


def test_rows_are_strict_json_and_a_missing_file_reads_empty(tmp_path):
    with pytest.raises(ValueError):
        append_row(tmp_path / "x.jsonl", {"a": float("nan")})  # the writer turns NaN into null first
    assert not (tmp_path / "x.jsonl").exists() or (tmp_path / "x.jsonl").read_text() == ""
    assert read_metrics(tmp_path) == [] and trim_rows(tmp_path / "none.jsonl", lambda row: True) == 0
