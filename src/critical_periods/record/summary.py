"""``summary.json``: a run's status and final numbers, written at its start and at its end.

Analysis reads only the run record, so it works offline and without a W&B account. The summary's
fields are :class:`Summary`; the statuses are :class:`~critical_periods.vocabulary.RunStatus`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from critical_periods.record.atomic import write_text_atomic
from critical_periods.record.layout import SUMMARY_FILE
from critical_periods.record.metric_names import FINAL_PREFIX, FINAL_TEST_ACC, FINAL_TEST_ERROR, FINAL_TEST_LOSS
from critical_periods.vocabulary import RunStatus


FINISHED = frozenset({RunStatus.COMPLETED, RunStatus.DIVERGED})  # final results: a re-run skips them
ENDED = FINISHED | {RunStatus.FAILED, RunStatus.INTERRUPTED}      # the record says how the run ended


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
    (<RunStatus.COMPLETED: 'completed'>, 0.25, {'old_key': 1}, True)
    """

    status: RunStatus = RunStatus.RUNNING
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
                payload[f.name] = value.value if isinstance(value, RunStatus) else value
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
        kwargs["status"] = RunStatus(payload.get("status", RunStatus.RUNNING))
        final = {k: v for k, v in payload.items() if k.startswith(FINAL_PREFIX)}
        extra = {k: v for k, v in payload.items() if k not in known and k not in final}
        return cls(**kwargs, final=final, extra=extra)


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """``payload`` as strict JSON (NaN refused before anything is written), replacing ``path`` whole."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, allow_nan=False, default=str))


def write_summary(run_dir: Path | str, summary: Summary) -> None:
    write_json_atomic(Path(run_dir) / SUMMARY_FILE, summary.to_json())


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
