"""A finished job's folder is left as it is when its sweep is run again: its ``.hydra/`` files and its log.

Hydra writes a job's ``.hydra/config.yaml``, ``hydra.yaml`` and ``overrides.yaml`` before the job's
function runs, so a re-run of a finished sweep rewrote them for every job that ``train`` then
skips: with the re-run's config, which may differ from the one the results came from (in keys that
do not change results, such as ``checkpoint.min_seconds``). ``conf/train.yaml`` sets
``hydra.output_subdir`` to ``${job_files_subdir:${hydra.runtime.output_dir}}``, resolved by Hydra
per job once the job's folder is known: ``.hydra`` for a job that will run, ``null`` (Hydra writes
nothing) for one whose ``summary.json`` says it finished (completed or diverged). Likewise the job's
log file (``hydra.job_logging.handlers.file.filename``): ``<job dir>/<job name>.log``, or
``os.devnull`` for a finished job, whose "skipped" line then goes to the console only.

The resolver is registered when the package is imported (``critical_periods/__init__.py``), so it is
there in every process that runs a job: the console scripts, ``python -m``, submitit's workers.
Only the standard library and OmegaConf here: ``--help`` stays fast.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from omegaconf import OmegaConf

from critical_periods.vocabulary import RunStatus

RESOLVER = "job_files_subdir"
LOG_RESOLVER = "job_log_file"
HYDRA_SUBDIR = ".hydra"
FINISHED_STATUSES = frozenset({RunStatus.COMPLETED.value, RunStatus.DIVERGED.value})


def finished(output_dir: str | Path) -> bool:
    """Whether ``output_dir/summary.json`` says the run finished; an unreadable file is not finished
    (``train`` then says what is wrong with it)."""
    try:
        summary = json.loads((Path(output_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(summary, dict) and summary.get("status") in FINISHED_STATUSES


def job_files_subdir(output_dir: str) -> str | None:
    """``hydra.output_subdir`` for the job in ``output_dir``: ``None`` (write nothing) if it finished."""
    return None if finished(output_dir) else HYDRA_SUBDIR


def job_log_file(output_dir: str, job_name: str) -> str:
    """The job's log file, Hydra's ``<output_dir>/<job_name>.log``; ``os.devnull`` if it finished."""
    return os.devnull if finished(output_dir) else str(Path(output_dir) / f"{job_name}.log")


def register() -> None:
    for name, resolver in ((RESOLVER, job_files_subdir), (LOG_RESOLVER, job_log_file)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


register()
