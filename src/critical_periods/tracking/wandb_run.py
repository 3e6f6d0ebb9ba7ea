"""One W&B run per training job, complete across resumes: group = the experiment/sweep name, run
name = the job's overrides, config = the resolved Hydra config, ``job_type="train"``, tags = the
study, the deficit kind and ``logger.wandb.tags``.

W&B is a mirror: the run record (``metrics.jsonl``, ``summary.json``) is the source of truth, and a
run is never failed because of W&B.

* **Offline** (the default): a run's first attempt streams live into an offline run as it trains,
  so ``wandb sync`` mid-run shows its progress, the history's timestamps are the real ones, and a
  run killed outright keeps what W&B's service had written (32 KiB blocks: the last rows may be
  missing). W&B cannot resume an offline run (a live one would be split
  at every resume), so an attempt that finds an earlier attempt's offline run (a resume) trains
  without W&B and, when it ends, writes one complete offline run from the record
  (:func:`write_offline_run`: every row of ``metrics.jsonl``, the config, the summary) in place of
  the earlier copy: ``wandb sync <run dir>/wandb/offline-run-*`` uploads one complete run, whose
  rows before the resume carry the replay's times, not the training's.
* **Online**: a live run, resumed by its id (kept in ``summary.json``) after an interruption. If W&B
  cannot start (no API key, server unreachable: the wait is bounded by ``logger.wandb.init_timeout``
  seconds) or fails mid-run, a warning says so and the offline run is written at the end instead.

Axes: W&B's step is the global optimiser step, and every metric is plotted against ``epoch`` =
epochs completed (0 for the initial weights, ``e + 1`` for the numbers of epoch ``e``, fractions for
the probes at early steps), the convention of the analysis figures. Note that ``metrics.jsonl``'s own
``epoch`` field is the epoch *in progress* (Lightning's), not this axis.

At the end the W&B summary holds the run's ``status`` (a diverged or interrupted run shows it, and
finishes with exit code 1), its ``final/*`` numbers, and no stale ``val_deficit/acc`` (its last value
dates from the deficit window).

Under ``wandb agent``, the agent assigns the run and locks the config keys it sweeps (``deficit``,
``deficit.length``): a swept config *group* would leave ``deficit`` as the option's name and drop
its resolved fields. The resolved config is written over the locked keys, so the run's config is the
one the job trained with, whatever the agent set.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Any

import wandb
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import WandbLogger

from critical_periods.record import metric_names as mn
from critical_periods.record.epochs import live_epoch, record_epochs, record_step
from critical_periods.vocabulary import DeficitKind
from critical_periods.vocabulary import RunStatus
from critical_periods.record.summary import Summary

log = logging.getLogger(__name__)

# W&B's x-axis for every metric (define_metric), in epochs completed.
EPOCH_AXIS = "epoch"
# Keys whose last value is not the run's state at its end: dropped from the W&B summary.
STALE_AT_END = (mn.VAL_DEFICIT_ACC,)
OFFLINE_START_SECONDS = 90.0  # an offline start waits on this machine alone (a loaded one can be slow)


def run_name(cfg: DictConfig) -> str:
    """The job's command-line overrides (``deficit.length=20,seed=1``), or ``cfg.name`` without any."""
    if HydraConfig.initialized():
        overrides = HydraConfig.get().job.override_dirname
        if overrides:
            return overrides
    return cfg.name


def wandb_settings(cfg: DictConfig) -> DictConfig:
    """``logger.wandb``: project, entity, mode, tags, init_timeout."""
    return cfg.logger.wandb


def wandb_run_id() -> str:
    """A fresh W&B run id; the run record keeps it so a resumed job continues the same W&B run."""
    return uuid.uuid4().hex[:12]


def under_agent() -> bool:
    return "WANDB_SWEEP_ID" in os.environ


def run_tags(cfg: DictConfig) -> list[str]:
    """The study (``cfg.name``), the deficit kind, then ``logger.wandb.tags``; no duplicates."""
    target = str(cfg.deficit.get("_target_", "")) if cfg.get("deficit") else ""
    tags = [str(cfg.name), f"deficit:{DeficitKind.from_target(target)}" if target else "deficit:none", *wandb_settings(cfg).tags]
    return list(dict.fromkeys(tags))


def init_arguments(cfg: DictConfig, out_dir: Path, run_id: str | None, mode: str) -> dict[str, Any]:
    """What ``wandb.init`` gets, live or written from the record."""
    settings = wandb_settings(cfg)
    timeout = float(settings.init_timeout) if mode != "offline" else OFFLINE_START_SECONDS
    return dict(
        project=settings.project,
        entity=settings.entity,
        group=cfg.name,
        name=run_name(cfg),
        job_type="train",
        tags=run_tags(cfg),
        dir=str(out_dir),
        # Under `wandb agent` the agent assigns the run; otherwise ours, so a resumed job continues it.
        id=None if under_agent() else run_id,
        mode=mode,
        config=OmegaConf.to_container(cfg, resolve=True),
        settings=wandb.Settings(silent=True, init_timeout=timeout),
    )


def use_resolved_config(run: Any, config: dict[str, Any]) -> None:
    """Write the resolved config over whatever the sweep agent locked (see the module docstring)."""
    run.config.update_locked(config, user="critical_periods", _allow_val_change=True)


def define_axes(run: Any) -> None:
    run.define_metric(EPOCH_AXIS)
    run.define_metric("*", step_metric=EPOCH_AXIS)


def finish_summary(run: Any, summary: Summary) -> None:
    """RunStatus and final numbers into the W&B summary; stale keys out."""
    run.summary["status"] = str(summary.status)
    for key, value in summary.final.items():
        run.summary[key] = value
    if summary.epochs_trained is not None:
        run.summary["epochs_trained"] = summary.epochs_trained
    for key in STALE_AT_END:
        if key in run.summary.keys():
            del run.summary[key]


def exit_code(summary: Summary) -> int:
    return 0 if summary.status == RunStatus.COMPLETED else 1


# -- online: a live run ---------------------------------------------------------------------------------


class MirrorWandbLogger(WandbLogger):
    """A ``WandbLogger`` that logs against the epoch axis and whose failures after start-up are
    warnings: the first one drops W&B for the rest of the run (the record still gets every row, and
    the offline run is written from it at the end)."""

    broken = False
    steps_per_epoch: int | None = None  # set when training starts (see LiveAxis)

    def _guard(self, what: str, call, *args: Any, **kwargs: Any) -> None:
        if self.broken:
            return
        try:
            call(*args, **kwargs)
        except Exception as err:  # W&B's own errors, network errors, a dead service process
            self.broken = True
            warnings.warn(f"W&B stopped working ({what}: {type(err).__name__}: {err}); training goes on, "
                          f"the run record keeps every metric", RuntimeWarning)

    def log_metrics(self, metrics, step=None) -> None:
        metrics = dict(metrics)
        if step is not None:
            metrics[EPOCH_AXIS] = live_epoch(metrics, step, self.steps_per_epoch)
            step = record_step(metrics, step)  # the record's step: optimiser steps taken
        # W&B's own step is the record's, as in a run written from the record (Lightning's logger
        # would leave W&B counting its calls and put the step in a column of its own).
        self._guard("log_metrics", lambda: self.experiment.log(metrics, step=step))

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        """The resolved config went to ``wandb.init``; Lightning's hparams would only repeat it."""

    def after_save_checkpoint(self, checkpoint_callback) -> None:
        self._guard("after_save_checkpoint", super().after_save_checkpoint, checkpoint_callback)

    def finalize(self, status: str) -> None:
        self._guard("finalize", super().finalize, status)


def earlier_offline_runs(out_dir: Path, run_id: str | None) -> list[Path]:
    """The offline W&B runs an earlier attempt of this run wrote (live or from the record)."""
    return sorted((out_dir / "wandb").glob(f"offline-run-*-{run_id}")) if run_id else []


def start_live_run(cfg: DictConfig, out_dir: Path, run_id: str,
                   history: list[dict[str, Any]] | None = None) -> MirrorWandbLogger | None:
    """A started live run (online, offline on a run's first attempt, or the sweep agent's run), or
    ``None``: an offline resume (written whole from the record at the end), or W&B could not start
    (warned). ``history``: record rows the run holds before its first step (a job branched from a
    sweep sibling's state), logged first."""
    if wandb_settings(cfg).mode == "offline" and not under_agent() and earlier_offline_runs(out_dir, run_id):
        return None
    finish_wandb(failed=False)  # a run left open in this process would be reused and take this run's rows
    arguments = init_arguments(cfg, out_dir, run_id, wandb_settings(cfg).mode)
    arguments["save_dir"] = arguments.pop("dir")
    # An online run continues by its id after an interruption; an offline one cannot (see above).
    resumable = wandb_settings(cfg).mode != "offline" and not under_agent()
    logger = MirrorWandbLogger(resume="allow" if resumable else None, **arguments)
    logger._wandb_init.pop("anonymous", None)  # Lightning passes None, which W&B warns about on every run
    try:
        run = logger.experiment  # wandb.init, here rather than mid-fit
        use_resolved_config(run, arguments["config"])
        define_axes(run)
        if history:
            log_rows(run, history)
    except Exception as err:
        finish_wandb(failed=True)
        reset_wandb()  # the failed start keeps the run id claimed in W&B's service: the offline copy needs it
        warnings.warn(f"W&B could not start in {wandb_settings(cfg).mode} mode ({type(err).__name__}: {str(err).strip()[:300]}); "
                      "the run trains without it and an offline W&B run is written from the record at the end",
                      RuntimeWarning)
        return None
    log.info("W&B run (%s mode) in %s/wandb", wandb_settings(cfg).mode, out_dir)
    return logger


def end_live_run(logger: MirrorWandbLogger, summary: Summary) -> bool:
    """Finish a live run with the run's summary; ``False`` if W&B failed (then write it offline)."""
    if logger.broken:
        finish_wandb(failed=True)
        return False
    try:
        finish_summary(logger.experiment, summary)
        wandb.finish(exit_code=exit_code(summary))
        # finish() can return before W&B's service has written the transaction log (measured: a
        # short run's file still held only its 7-byte header); a later job or a kill would lose it.
        reset_wandb()
        return True
    except Exception as err:
        warnings.warn(f"W&B could not finish its run ({type(err).__name__}: {err})", RuntimeWarning)
        finish_wandb(failed=True)
        return False


# -- offline: one run written from the record -------------------------------------------------------------


def log_rows(run: Any, rows: list[dict[str, Any]]) -> None:
    """Log record rows to a W&B run, in step order, each with its epoch axis value."""
    ordered = sorted(rows, key=lambda row: row.get("step") or 0)  # W&B steps never go back
    for row, epoch in zip(ordered, record_epochs(ordered)):
        values = {k: v for k, v in row.items() if k not in ("step", "epoch") and v is not None}
        if values:
            run.log({**values, EPOCH_AXIS: epoch}, step=int(row.get("step") or 0))


def write_offline_run(cfg: DictConfig, out_dir: Path, summary: Summary, rows: list[dict[str, Any]]) -> Path | None:
    """One complete offline W&B run from the record; returns its folder (``None`` if W&B failed, warned).
    An earlier offline copy of this run (an interrupted attempt) is replaced."""
    for old in earlier_offline_runs(out_dir, summary.wandb_id):
        shutil.rmtree(old, ignore_errors=True)
    try:
        finish_wandb(failed=False)  # a run left open in this process would take this run's rows
        run = wandb.init(**init_arguments(cfg, out_dir, summary.wandb_id, "offline"))
        define_axes(run)
        log_rows(run, rows)
        finish_summary(run, summary)
        folder = Path(run.dir).parent
        run.finish(exit_code=exit_code(summary))
        reset_wandb()  # waits for W&B's service to write the whole transaction log before the job moves on
        return folder
    except Exception as err:
        finish_wandb(failed=True)
        warnings.warn(f"the offline W&B run could not be written ({type(err).__name__}: {err}); the run record "
                      "is complete", RuntimeWarning)
        return None


def reset_wandb() -> None:
    """Shut W&B's service process down; the next ``wandb.init`` starts a fresh one. Never raises."""
    try:
        wandb.teardown()
    except Exception as err:
        warnings.warn(f"W&B could not shut its service down ({type(err).__name__}: {err})", RuntimeWarning)


def finish_wandb(failed: bool) -> None:
    """Close the current W&B run, if any, so the next multirun job starts its own. Never raises."""
    try:
        if wandb.run is not None:
            wandb.finish(exit_code=1 if failed else 0)
    except Exception as err:
        warnings.warn(f"W&B could not finish its run ({type(err).__name__}: {err})", RuntimeWarning)
