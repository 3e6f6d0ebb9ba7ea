"""The run record on disk: ``metrics.jsonl`` while training, ``summary.json`` from start to end.

Analysis reads only these files, so it works offline and without a W&B account. Non-finite
numbers are written as ``null`` to keep every line strict JSON. The vocabulary of the record lives
here: the run statuses (:class:`Status`) and the summary's fields (:class:`Summary`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers.logger import Logger
from pytorch_lightning.utilities import rank_zero_only

from critical_periods.atomic import write_text_atomic
from critical_periods.metric_names import (
    EPOCH, FINAL_PREFIX, FINAL_TEST_ACC, FINAL_TEST_ERROR, FINAL_TEST_LOSS, STEP,
)

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"


class Status(str, Enum):
    """What a run's record says about it. A typo is a ``ValueError``, not a new category.

    >>> Status("completed") is Status.COMPLETED, Status.COMPLETED == "completed"
    (True, True)
    """

    COMPLETED = "completed"      # trained and tested
    DIVERGED = "diverged"        # stopped on a non-finite training loss (a result, not an error)
    FAILED = "failed"            # an exception ended it; `error` says which
    INTERRUPTED = "interrupted"  # stopped by a signal (SIGTERM/SIGINT, pre-emption); resumes on re-run
    RUNNING = "running"          # written at start; still running, or killed without a chance to say so
    NOT_STARTED = "not_started"  # only Hydra's files: rejected or skipped before training (analysis only)
    DEBUG = "debug"              # a debug=default run (a couple of batches): never a result

    def __str__(self) -> str:
        return self.value


FINISHED = frozenset({Status.COMPLETED, Status.DIVERGED})  # final results: a re-run skips them
ENDED = FINISHED | {Status.FAILED, Status.INTERRUPTED}      # the record says how the run ended


# Summary fields written even when null (null is an answer there: "trained from scratch").
ALWAYS_WRITTEN = frozenset({"branched_from_epoch"})


@dataclass
class Summary:
    """``summary.json``: what every analysis needs, beside the resolved ``config``.

    ``final`` holds the ``final/*`` numbers of a completed run (flat keys in the file, e.g.
    ``final/test_error`` = 1 - test accuracy, a fraction). Fields an older summary lacks take their
    defaults; keys this class does not know are kept in ``extra`` and written back unchanged.

    >>> s = Summary.from_json({"status": "completed", "final/test_error": 0.25, "old_key": 1})
    >>> s.status, s.test_error, s.extra, Summary.from_json(s.to_json()) == s
    (<Status.COMPLETED: 'completed'>, 0.25, {'old_key': 1}, True)
    """

    status: Status = Status.RUNNING
    deficit: str | None = None
    onset: int | None = None
    length: int | None = None
    epochs: int | None = None
    seed: int | None = None
    name: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    wandb_id: str | None = None
    resumed_from_epoch: int | None = None
    # Epochs taken over from a sweep sibling's branch point; null: the job trained from its first epoch.
    branched_from_epoch: int | None = None
    epochs_trained: int | None = None
    fit_seconds: float | None = None
    # torch's CPU threads during the fit (torch.get_num_threads()): fit_seconds means little without it,
    # and the count changes float summation order.
    threads: int | None = None
    error: str | None = None
    traceback: str | None = None
    final: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def test_error(self) -> float | None:
        return self.final.get(FINAL_TEST_ERROR)

    @property
    def test_acc(self) -> float | None:
        return self.final.get(FINAL_TEST_ACC)

    @property
    def test_loss(self) -> float | None:
        return self.final.get(FINAL_TEST_LOSS)

    def to_json(self) -> dict[str, Any]:
        """The file's flat object: fields that are set, ``final/*`` keys, then ``extra``."""
        payload = {**self.extra}
        for f in dataclasses.fields(self):
            if f.name in ("final", "extra"):
                continue
            value = getattr(self, f.name)
            if value is not None or f.name in ALWAYS_WRITTEN:
                payload[f.name] = value.value if isinstance(value, Status) else value
        payload.update(self.final)
        return payload

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> Summary:
        """Read any summary this project has written. Raises ``ValueError`` if ``payload`` is not an
        object or its status is unknown."""
        if not isinstance(payload, dict):
            raise ValueError(f"expected a JSON object, got {type(payload).__name__}")
        known = {f.name for f in dataclasses.fields(cls)} - {"final", "extra"}
        kwargs = {k: v for k, v in payload.items() if k in known}
        kwargs["status"] = Status(payload.get("status", Status.RUNNING))
        final = {k: v for k, v in payload.items() if k.startswith(FINAL_PREFIX)}
        extra = {k: v for k, v in payload.items() if k not in known and k not in final}
        return cls(**kwargs, final=final, extra=extra)


def _plain(value: Any) -> Any:
    """A JSON-safe python value: tensors become numbers, NaN and inf become None."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """``payload`` as strict JSON (NaN refused before anything is written), replacing ``path`` whole."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, allow_nan=False, default=str))


def write_summary(run_dir: Path | str, summary: Summary) -> None:
    write_json_atomic(Path(run_dir) / SUMMARY_FILE, summary.to_json())


def read_metrics(run_dir: Path | str) -> list[dict[str, Any]]:
    """Every line of a run's ``metrics.jsonl`` (empty if the run logged nothing yet)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_summary(run_dir: Path | str) -> dict[str, Any] | None:
    """The raw JSON of ``summary.json`` (``None`` if there is none)."""
    path = Path(run_dir) / SUMMARY_FILE
    return json.loads(path.read_text()) if path.exists() else None


def load_summary(run_dir: Path | str) -> Summary | None:
    """``summary.json`` as a :class:`Summary` (``None`` if there is none). Raises ``ValueError``
    naming the file when it is not a summary (torn, not JSON, not an object, unknown status)."""
    path = Path(run_dir) / SUMMARY_FILE
    try:
        payload = read_summary(run_dir)
        return None if payload is None else Summary.from_json(payload)
    except ValueError as err:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"{path}: not a readable run summary ({err})") from err


class RunRecordLogger(Logger):
    """A Lightning logger that appends every ``log_metrics`` call to ``metrics.jsonl`` as one object
    ``{"step": ..., "epoch": ..., <metric>: ...}``. Everything the module and the probe callbacks
    log reaches it, under the same names W&B gets."""

    def __init__(self, run_dir: Path | str) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / METRICS_FILE

    @property
    def name(self) -> str:
        return "run_record"

    @property
    def version(self) -> str:
        return ""

    @property
    def root_dir(self) -> str:
        return str(self.run_dir)

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """The resolved config goes to ``summary.json`` instead (written by the training entry point)."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        row = {STEP: step, **{key: _plain(value) for key, value in metrics.items()}}
        if isinstance(row.get(EPOCH), float) and row[EPOCH].is_integer():
            row[EPOCH] = int(row[EPOCH])
        # One line per call, flushed, so an interrupted run keeps everything logged so far.
        with open(self.path, "a") as f:
            f.write(json.dumps(row, allow_nan=False) + "\n")
