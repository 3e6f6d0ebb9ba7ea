"""The Hydra entry point: ``python -m critical_periods.train [overrides]`` (``-m`` for a sweep), the
same as ``critical-periods-train``.

One run, as a short story: compose (Hydra), validate, claim the run folder, fit, test, record.
``train(cfg)`` tells it; the ``@hydra.main`` function only calls it, and the tests call ``train``
directly. torch, Lightning and W&B are imported only once a run trains, so ``--help`` and TAB
completion answer at once whichever way the command is started.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig, OmegaConf

from critical_periods.config.paths import CONF_DIR
from critical_periods.config.validation import check_config
from critical_periods.exits import with_exit_codes
from critical_periods.preflight import exit_on_bad_input
from critical_periods.record.lock import RunFolderBusy, RunLock
from critical_periods.record.resume import ResumePoint, resume_point
from critical_periods.stopping import clear_stop
from critical_periods.sweep.launch import check_launch

if TYPE_CHECKING:
    from critical_periods.record.summary import Summary

log = logging.getLogger(__name__)


def skipped(point: ResumePoint, out_dir: Path) -> bool:
    if point.finished:
        log.info("skipped: %s already holds a %s run", out_dir, point.previous.status)
    return point.finished


def train(cfg: DictConfig) -> Summary | None:
    """Fit and test one run; write ``summary.json`` (status completed/diverged/failed/interrupted).

    Returns the summary, or ``None`` when another live process holds the run folder (the job is
    skipped and nothing is written). Bad config values, bad data files and a folder that cannot be
    resumed raise a one-line :class:`ConfigError`/:class:`ResumeError` before the folder is claimed.
    A finished run in ``paths.output_dir`` is returned without training; an interrupted one resumes
    from its last checkpoint (see ``critical_periods.record.resume``). A stop requested by a signal
    ends the run as ``interrupted`` and re-raises (``StopRequested`` or ``SystemExit``).
    """
    # Here, not at the top: the command's --help and completion need none of torch/Lightning/W&B.
    import pytorch_lightning as pl

    from critical_periods.build import build_job, quiet_lightning
    from critical_periods.fitting import fit_and_test
    from critical_periods.sweep.branching import JobBranching
    from critical_periods.threads import numerics_environment, set_threads

    quiet_lightning()
    clear_stop()
    out_dir = Path(cfg.paths.output_dir)
    check_config(cfg)
    config = OmegaConf.to_container(cfg, resolve=True)
    point = resume_point(out_dir, config)
    if skipped(point, out_dir):
        return point.previous
    set_threads(cfg.get("threads"))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    job = build_job(cfg, config, out_dir)

    try:
        lock = RunLock(out_dir)
        lock.acquire()
    except RunFolderBusy as busy:
        log.warning("skipped: %s", busy)
        return None
    try:
        # Authoritative now that the folder is ours (another process may have finished it meanwhile).
        point = resume_point(out_dir, config)
        branching = JobBranching.for_job(cfg, config, numerics_environment(cfg.trainer.accelerator))
        if skipped(point, out_dir):
            branching.prune()
            return point.previous
        summary = fit_and_test(job, branching.start(point, out_dir), branching)
        branching.prune()
        return summary
    finally:
        lock.release()


def run_job(cfg: DictConfig) -> float | None:
    """The task of both entry points, with the exit codes of :mod:`critical_periods.exits`. A
    multirun stops at the first job that exits non-zero."""
    def checked_train() -> Summary | None:
        check_launch(cfg)
        return train(cfg)

    summary = with_exit_codes(checked_train, where=str(cfg.paths.output_dir))
    return summary.test_error if summary is not None else None


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run_job(cfg)


if __name__ == "__main__":
    exit_on_bad_input(sys.argv[1:])  # the whole command's config, before Hydra writes anything
    main()
