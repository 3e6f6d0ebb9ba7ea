"""Find a sweep's job directories and load each one's run record into a :class:`Run`.

A job directory is any directory under the sweep that holds ``.hydra/config.yaml``,
``summary.json`` or ``metrics.jsonl`` (whatever Hydra named it). ``analysis/`` and ``wandb/``
subtrees are skipped, and so is the inside of a job directory once found.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from critical_periods.record.layout import BRANCH_STORE_DIR, METRICS_FILE, SUMMARY_FILE

from critical_periods.vocabulary import DeficitKind, RunStatus

from critical_periods.record.summary import Summary, load_summary

from critical_periods.record.jsonl import read_rows_and_torn
from critical_periods.record.result_keys import is_result_key
from critical_periods.record.lock import is_held

SKIPPED_DIRS = frozenset({"analysis", "wandb", ".hydra", BRANCH_STORE_DIR})

# The analysis' own axes: every run is placed by its deficit and averaged over seeds. Every other
# result key (``result_keys.RESULT_KEYS``) that varies between runs makes a condition, except the
# probes: they change what a run records, never how it trains (a run with probes reaches bitwise the
# weights of one without; tests/test_probe_callback.py), so runs probed differently are one condition.
CONDITION_AXES = ("seed", "deficit", "probes")


class SweepError(ValueError):
    """The sweep directory is missing or holds no job."""


@dataclass
class Run:
    """One job of the sweep, as its record on disk describes it.

    ``status`` (a :class:`RunStatus`) is the summary's, except: a job without ``summary.json`` is
    ``running`` if it logged metrics and ``not_started`` if it holds only Hydra's files (rejected or
    skipped before training); a summary that says ``running`` while no process holds the folder's
    lock is ``interrupted`` (killed without a chance to say so). Fields the record does not give are
    ``None``. ``test_error`` is ``final/test_error`` = 1 - test accuracy, a fraction (not percent).
    """

    job: str                      # the job directory, relative to the sweep directory
    path: Path
    overrides: tuple[str, ...]    # the job's Hydra overrides (.hydra/overrides.yaml)
    status: RunStatus
    summary: Summary | None
    config: dict[str, Any]        # resolved (from summary.json) or raw (.hydra/config.yaml) config
    metrics: list[dict[str, Any]] = field(repr=False, default_factory=list)
    notes: list[str] = field(default_factory=list)  # problems met while reading the record

    # -- what the summary (or, for a running job, the config) says --------------------------------

    def _get(self, key: str, *config_path: str) -> Any:
        value = getattr(self.summary, key, None) if self.summary is not None else None
        if value is None and config_path:
            return dig(self.config, *config_path)
        return value

    @property
    def name(self) -> str | None:
        return self._get("name", "name")

    @property
    def deficit(self) -> str | None:
        """The deficit kind: none | blur | vertical_flip | label_permutation | noise."""
        if self.summary is not None and self.summary.deficit is not None:
            return self.summary.deficit
        target = dig(self.config, "deficit", "_target_")
        return DeficitKind.from_target(target).value if isinstance(target, str) else None

    @property
    def onset(self) -> int | None:
        return _int(self._get("onset", "deficit", "onset"))

    @property
    def length(self) -> int | None:
        return _int(self._get("length", "deficit", "length"))

    @property
    def removal_epoch(self) -> int | None:
        """The epoch at which the deficit is removed: onset + length."""
        if self.onset is None or self.length is None:
            return None
        return self.onset + self.length

    @property
    def epochs(self) -> int | None:
        return _int(self._get("epochs"))

    @property
    def epochs_trained(self) -> int | None:
        return _int(self._get("epochs_trained"))

    @property
    def seed(self) -> int | None:
        return _int(self._get("seed", "seed"))

    @property
    def lr(self) -> float | None:
        return _float(dig(self.config, "optim", "lr"))

    @property
    def batch_size(self) -> int | None:
        return _int(dig(self.config, "data", "batch_size"))

    @property
    def weight_decay(self) -> float | None:
        return _float(dig(self.config, "optim", "weight_decay"))

    @property
    def model(self) -> str | None:
        """The model's class name (``MLP``, ``AllCNN``, ...)."""
        target = dig(self.config, "model", "_target_")
        return target.rsplit(".", 1)[-1] if isinstance(target, str) else None

    @property
    def project(self) -> str | None:
        # logger.wandb.project; logger.project in runs from before several loggers could be chosen
        project = dig(self.config, "logger", "wandb", "project") or dig(self.config, "logger", "project")
        return project if isinstance(project, str) else None

    @property
    def test_error(self) -> float | None:
        return self.summary.test_error if self.summary is not None else None

    @property
    def test_acc(self) -> float | None:
        return self.summary.test_acc if self.summary is not None else None

    @property
    def test_loss(self) -> float | None:
        return self.summary.test_loss if self.summary is not None else None

    @property
    def fit_seconds(self) -> float | None:
        return self._get("fit_seconds")

    @property
    def branched_from_epoch(self) -> int | None:
        """Epochs this run took over from a sweep sibling's branch point (``None``: trained them all)."""
        return self._get("branched_from_epoch")

    @property
    def error(self) -> str | None:
        """The first line of the failure message of a failed run."""
        error = self._get("error")
        return str(error).strip().splitlines()[0] if error else None

    # -- what the analysis does with it ----------------------------------------------------------

    @property
    def completed(self) -> bool:
        return self.status == RunStatus.COMPLETED

    @property
    def is_baseline(self) -> bool:
        """A run without deficit: kind ``none``, or a deficit of length 0."""
        return self.deficit == DeficitKind.NONE or self.length == 0

    def has(self, key: str) -> bool:
        """Whether any metrics row has a finite value for ``key``."""
        return any(row.get(key) is not None for row in self.metrics)


def dig(tree: Any, *keys: str) -> Any:
    """``tree[k1][k2]...``, or ``None`` where a level is missing."""
    for key in keys:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# -- finding and reading jobs ------------------------------------------------------------------------


def is_job_dir(path: Path) -> bool:
    return (path / ".hydra" / "config.yaml").is_file() or (path / SUMMARY_FILE).is_file() or (path / METRICS_FILE).is_file()


def find_job_dirs(sweep_dir: Path, skip: Iterable[Path] = ()) -> list[Path]:
    """Every job directory under ``sweep_dir`` (itself included), sorted; ``skip``: subtrees to ignore."""
    skip = {Path(p).resolve() for p in skip}
    jobs = []
    for root, dirs, _files in os.walk(sweep_dir):
        here = Path(root)
        if is_job_dir(here):
            jobs.append(here)
            dirs.clear()  # a job's own subfolders (wandb/, checkpoints) are not jobs
            continue
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and (here / d).resolve() not in skip)
    return sorted(jobs)


def read_overrides(job_dir: Path) -> tuple[str, ...]:
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return ()
    overrides = yaml.safe_load(path.read_text()) or []
    return tuple(str(o) for o in overrides)


def _read_metrics_tolerant(job_dir: Path, notes: list[str]) -> list[dict[str, Any]]:
    """``metrics.jsonl``; a line cut short by a job being written to or killed is skipped, with a note."""
    rows, bad = read_rows_and_torn(job_dir / METRICS_FILE)
    if bad:
        notes.append(f"{bad} unreadable line(s) in {METRICS_FILE} skipped")
    return rows


def status_of(job_dir: Path, summary: Summary | None, metrics: list[dict[str, Any]]) -> RunStatus:
    if summary is None:
        return RunStatus.RUNNING if metrics else RunStatus.NOT_STARTED
    if summary.status == RunStatus.RUNNING and is_held(job_dir) is False:
        return RunStatus.INTERRUPTED  # its process is gone (the OS dropped the lock) without recording an end
    return summary.status


def load_run(job_dir: Path, sweep_dir: Path) -> Run:
    """The job's record. An unreadable ``summary.json`` (torn, not a summary) is read as missing,
    with a note naming the file."""
    notes: list[str] = []
    try:
        summary = load_summary(job_dir)
    except ValueError as err:
        summary = None
        notes.append(f"{err}; read as if it had no summary")
    if summary is not None:
        config = summary.config
    else:
        config_path = job_dir / ".hydra" / "config.yaml"
        config = (yaml.safe_load(config_path.read_text()) or {}) if config_path.is_file() else {}
    metrics = _read_metrics_tolerant(job_dir, notes)
    job = job_dir.relative_to(sweep_dir).as_posix()
    return Run(
        job=job if job != "" else ".",
        path=job_dir,
        overrides=read_overrides(job_dir),
        status=status_of(job_dir, summary, metrics),
        summary=summary,
        config=config,
        metrics=metrics,
        notes=notes,
    )


def load_sweep(sweep_dir: Path | str, skip: Iterable[Path] = ()) -> list[Run]:
    """Every job of the sweep, sorted by job directory. Raises :class:`SweepError` if there is none."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise SweepError(f"sweep directory {sweep_dir} does not exist (or is not a directory)")
    jobs = find_job_dirs(sweep_dir, skip)
    if not jobs:
        raise SweepError(
            f"no job found under {sweep_dir}: no directory there holds .hydra/config.yaml, "
            f"{SUMMARY_FILE} or {METRICS_FILE}"
        )
    return [load_run(job, sweep_dir) for job in jobs]


# -- what tells runs apart ------------------------------------------------------------------------------


def flatten(tree: Any, prefix: str = "") -> dict[str, str]:
    """A nested config as ``{"a.b": json text of the value}`` (lists stay whole)."""
    if not isinstance(tree, dict):
        return {prefix: json.dumps(tree, sort_keys=True)}
    flat: dict[str, str] = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def varying_settings(runs: Sequence[Run]) -> list[str]:
    """The result keys (``result_keys``) whose values differ between the runs that have a summary,
    except ``CONDITION_AXES`` (seed and deficit, the analysis' axes; probes, which never change training)."""
    flats = [flatten(r.config) for r in runs if r.summary is not None and r.config]
    keys = sorted({k for f in flats for k in f})
    return [
        k for k in keys
        if is_result_key(k) and k.split(".", 1)[0] not in CONDITION_AXES and len({f.get(k) for f in flats}) > 1
    ]


def condition(run: Run, keys: Sequence[str]) -> str:
    """The run's experimental condition apart from deficit and seed: ``key=value`` for each varying
    setting, comma-joined (``""`` when nothing else varies). Runs with the same condition are
    compared with each other and with the baseline of that condition."""
    flat = flatten(run.config)
    parts = []
    for key in keys:
        value = flat.get(key)
        parts.append(f"{key}={json.loads(value) if value is not None else None}".replace(" ", ""))
    return ",".join(parts)


def hidden_layers(run: Run) -> int | None:
    """An MLP's number of hidden layers (``model.widths``'s length); ``None`` for other models."""
    widths = (run.config.get("model") or {}).get("widths")
    return len(widths) if isinstance(widths, (list, tuple)) else None
