"""Fit and test one built run in the folder it owns, and write its record whatever happens."""

from __future__ import annotations

import errno
import logging
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from critical_periods.build import Job, build_trainer, checkpoint_callbacks
from critical_periods.callbacks.progress import EpochProgress
from critical_periods.callbacks.random_states import RandomStates
from critical_periods.callbacks.run_config import StoreRunConfig
from critical_periods.callbacks.stop import StopWhenRequested
from critical_periods.record.layout import SUMMARY_FILE
from critical_periods.record.metric_names import FINAL_PREFIX, FINAL_TEST_ACC, FINAL_TEST_ERROR, FINAL_TEST_LOSS, TEST_ACC, TEST_LOSS
from critical_periods.record.resume import ResumePoint, remove_partial_files, trim_metrics
from critical_periods.record.summary import Summary, write_summary
from critical_periods.signals import stop_on_signals
from critical_periods.stopping import StopRequested, raise_if_stop_requested
from critical_periods.sweep.branching import JobBranching
from critical_periods.tracking.run_tracking import RunTracking
from critical_periods.tracking.wandb_run import wandb_run_id
from critical_periods.vocabulary import RunStatus

log = logging.getLogger(__name__)


def starting_summary(job: Job, point: ResumePoint) -> Summary:
    """The record of a run that is starting (or resuming): what every analysis needs, beside the
    resolved ``config``; the W&B id is kept across resumes."""
    deficit = job.datamodule.deficit
    summary = Summary(status=RunStatus.RUNNING, deficit=deficit.kind, onset=deficit.onset, length=deficit.length,
                      epochs=job.epochs, seed=job.cfg.seed, name=job.cfg.name, config=job.config)
    summary.wandb_id = (point.previous.wandb_id if point.previous is not None else None) or wandb_run_id()
    summary.branched_from_epoch = point.branched_from
    if point.resumed:
        summary.resumed_from_epoch = point.epoch
    return summary


def final_metrics(fit_metrics: dict[str, Any], test_results: list[dict[str, float]]) -> dict[str, float]:
    """``final/*``: the last epoch's train/val numbers (taken after fit: testing resets Lightning's
    callback metrics) and the test numbers. Not val_deficit/*: its last value dates from the deficit."""
    metrics = {
        f"{FINAL_PREFIX}{key.replace('/', '_')}": float(value)
        for key, value in fit_metrics.items()
        if key.split("/")[0] in ("train", "val")
    }
    test_acc = test_results[0][TEST_ACC]
    metrics.update({FINAL_TEST_ACC: test_acc, FINAL_TEST_ERROR: 1.0 - test_acc})
    metrics[FINAL_TEST_LOSS] = test_results[0][TEST_LOSS]
    return metrics


def is_interruption(error: BaseException) -> bool:
    """A stop request, Ctrl+C, or a SystemExit (Lightning's SIGTERM exit, submitit's exit after requeue)."""
    return isinstance(error, (StopRequested, KeyboardInterrupt, SystemExit))


def disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno == errno.ENOSPC


def record_end(out_dir: Path, summary: Summary, error: BaseException) -> None:
    """Write the record of a run that ``error`` ended. On a full disk, the half-written files
    (a checkpoint being saved, temporary files) are removed first: they are useless, and the room
    they took lets the summary say ``failed`` and why. If the write fails even so, the training error
    is still the one raised, with the write error noted on it and logged."""
    if disk_full(error):
        removed = remove_partial_files(out_dir)
        summary.error = (f"no space left on device for {out_dir}; {removed} half-written "
                         "file(s) removed. Free space and run the same command again: it resumes from the last "
                         "good checkpoint")
    try:
        write_summary(out_dir, summary)
    except Exception as write_error:
        note = (f"and the run record {out_dir / SUMMARY_FILE} could not be written "
                f"({type(write_error).__name__}: {write_error}); it still says '{RunStatus.RUNNING}'")
        log.error("run ended by %s: %s %s", type(error).__name__, error, note)
        error.add_note(note)


def fit_and_test(job: Job, point: ResumePoint, branching: JobBranching) -> Summary:
    """Train ``job`` from ``point`` (its own checkpoint, a branch point, or the start), test it, and
    write its summary: completed, diverged, failed or interrupted (then re-raised)."""
    trim_metrics(job.out_dir, point.epoch)
    summary = starting_summary(job, point)
    if point.resumed:
        log.info("resuming %s after epoch %d", job.out_dir, point.epoch)
    if point.epoch is not None:
        for callback in job.probes:
            callback.at_start = False  # its at-start row is in the record already; once is enough
    write_summary(job.out_dir, summary)
    tracking = RunTracking(job.cfg, job.out_dir)
    loggers, tracking_callbacks = tracking.start(summary, branched_now=point.branched_from is not None and not point.resumed)
    callbacks = [*job.probes, *checkpoint_callbacks(job.cfg, job.out_dir), StopWhenRequested(), EpochProgress(),
                 StoreRunConfig(job.config), RandomStates(), *branching.callbacks(job.out_dir), *tracking_callbacks]
    trainer = build_trainer(job.cfg, job.epochs, loggers, callbacks)

    with stop_on_signals():
        try:
            run_fit_and_test(job, trainer, point, summary)
            tracking.finalize_files()
        except BaseException as error:
            summary.status = RunStatus.INTERRUPTED if is_interruption(error) else RunStatus.FAILED
            summary.error = f"{type(error).__name__}: {error}"
            summary.traceback = traceback.format_exc()
            record_end(job.out_dir, summary, error)
            tracking.end(summary)
            raise
    write_summary(job.out_dir, summary)
    tracking.end(summary)
    log.info("%s: %s, test error %s -> %s", summary.status, job.out_dir, summary.test_error, job.out_dir / SUMMARY_FILE)
    return summary


def run_fit_and_test(job: Job, trainer, point: ResumePoint, summary: Summary) -> None:
    """The Lightning part: fit from ``point``'s checkpoint, then test unless the loss diverged; fills
    ``summary`` in (status, epochs trained, fit seconds, ``final/*``)."""
    summary.threads = torch.get_num_threads()  # runtimes mean nothing without it
    started = time.perf_counter()
    trainer.fit(job.module, datamodule=job.datamodule, ckpt_path=point.checkpoint, weights_only=True)
    raise_if_stop_requested()  # a signal in the fit's last moments
    summary.fit_seconds = time.perf_counter() - started
    summary.epochs_trained = trainer.current_epoch
    if job.module.diverged:
        summary.status = RunStatus.DIVERGED
        return
    fit_metrics = dict(trainer.callback_metrics)
    test_results = trainer.test(job.module, datamodule=job.datamodule, verbose=False)
    raise_if_stop_requested()
    summary.final = final_metrics(fit_metrics, test_results)
    summary.status = RunStatus.DEBUG if job.cfg.get("debug_run") else RunStatus.COMPLETED
    for logger in trainer.loggers:
        logger.log_metrics(dict(summary.final), step=trainer.global_step)
