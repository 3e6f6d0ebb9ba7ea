"""The Hydra entry point: ``python -m critical_periods.train [overrides]`` (``-m`` for a sweep).

``train(cfg)`` builds everything from the composed config, fits, tests, and writes the run record;
the ``@hydra.main`` function only calls it, and the tests call ``train`` directly.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.plugins.environments import SLURMEnvironment
from pytorch_lightning.utilities.exceptions import SIGTERMException

from critical_periods.branching.plan import BranchPlan, branch_plan
from critical_periods.callbacks.branch_points import BranchPoints
from critical_periods.callbacks.checkpoint import ResumeCheckpoint
from critical_periods.callbacks.progress import EpochProgress
from critical_periods.callbacks.random_states import RandomStates
from critical_periods.callbacks.run_config import StoreRunConfig
from critical_periods.callbacks.stop import StopWhenRequested
from critical_periods.data.datamodule import DeficitDataModule
from critical_periods.loggers import build_loggers, logger_kind
from critical_periods.metric_names import FINAL_PREFIX, FINAL_TEST_ACC, FINAL_TEST_ERROR, FINAL_TEST_LOSS, TEST_ACC, TEST_LOSS
from critical_periods.models.performance import prepare_model
from critical_periods.module import ClassifierModule
from critical_periods.records import FINISHED, SUMMARY_FILE, Status, Summary, load_summary, read_metrics, write_summary
from critical_periods.resume import ResumeError, check_same_run, checkpoint_epoch, last_checkpoint, trim_metrics
from critical_periods.run_lock import RunFolderBusy, RunLock
from critical_periods.schedule import lr_factor, total_epochs
from critical_periods.signals import exit_code, received_signal, stop_on_signals
from critical_periods.stopping import StopRequested, clear_stop, raise_if_stop_requested
from critical_periods.validation import ConfigError, check_config, check_probe_size
from critical_periods.wandb_run import (
    MirrorWandbLogger, end_live_run, start_live_run, wandb_run_id, write_offline_run,
)

log = logging.getLogger(__name__)


def quiet_lightning() -> None:
    """Drop Lightning's per-fit chatter (GPU/TPU availability lines, advertising tips) and a
    deprecation notice it triggers inside torch; keep every other warning."""
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    # A checkpoint from another folder (a branch point, a copied run): ResumeCheckpoint keeps no
    # "best model" paths, so there is nothing to reload and nothing to warn about.
    warnings.filterwarnings("ignore", message=r".*The dirpath has changed from.*")
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)


def build_datamodule(cfg: DictConfig) -> DeficitDataModule:
    """The data module with its deficit bound to the data: loads the data and checks the deficit's
    options against it, so bad input fails here, before any model is built."""
    deficit = hydra.utils.instantiate(cfg.deficit)
    datamodule = hydra.utils.instantiate(cfg.data, deficit=deficit, seed=cfg.seed)
    datamodule.setup("fit")
    return datamodule


def build_trainer(cfg: DictConfig, max_epochs: int, loggers: list, callbacks: list) -> pl.Trainer:
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    if trainer_cfg.get("enable_progress_bar") is None:
        trainer_cfg["enable_progress_bar"] = sys.stderr.isatty()
    if SLURMEnvironment.detect():
        # submitit requeues pre-empted and timed-out jobs; Lightning's own requeue would fight it.
        trainer_cfg["plugins"] = [*trainer_cfg.get("plugins", []), SLURMEnvironment(auto_requeue=False)]
    return hydra.utils.instantiate(
        trainer_cfg,
        max_epochs=max_epochs,
        logger=loggers,
        callbacks=callbacks,
        default_root_dir=cfg.paths.output_dir,
    )


def summary_of(cfg: DictConfig, config: dict[str, Any], datamodule: DeficitDataModule, epochs: int) -> Summary:
    """The record of a run that has just started: what every analysis needs, beside the resolved ``config``."""
    deficit = datamodule.deficit
    return Summary(status=Status.RUNNING, deficit=deficit.kind, onset=deficit.onset, length=deficit.length,
                   epochs=epochs, seed=cfg.seed, name=cfg.name, config=config)


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


def default_threads() -> int | None:
    """torch CPU threads when the config says ``threads: null``: the allocation under SLURM, one per
    job under submitit's local launcher (its jobs run at once), and otherwise one core fewer than
    torch would take (at most its default), so one other busy process never shares a core with a
    training thread. ``None``: leave torch alone (``OMP_NUM_THREADS`` is set).

    Why: torch's threads spin while they wait for each other; when another process holds one of
    their cores, every parallel operation waits for the scheduler. On a 2-core machine beside one
    busy process an epoch took 4.7x (MLP) and 6.5x (Conv1DNet) its idle time with 2 threads, and
    1.1x with 1 (README, Threads). Thread counts change float summation order, so the count is fixed
    for a run, never chosen from the machine's load."""
    if "SLURM_CPUS_PER_TASK" in os.environ:
        return int(os.environ["SLURM_CPUS_PER_TASK"])
    if os.environ.get("SUBMITIT_EXECUTOR") == "local":
        return 1
    if "OMP_NUM_THREADS" in os.environ:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(torch.get_num_threads(), cores - 1))


def set_threads(threads: int | None) -> None:
    """Cap torch's CPU threads at ``threads``, or :func:`default_threads` for ``None``."""
    if threads is None:
        threads = default_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))


def checkpoint_callbacks(cfg: DictConfig, out_dir: Path) -> list[pl.Callback]:
    """The resume checkpoint (none with ``checkpoint.every_n_epochs=0``)."""
    every = cfg.checkpoint.every_n_epochs
    if not every:
        return []
    return [ResumeCheckpoint(out_dir, every_n_epochs=every, min_seconds=cfg.checkpoint.min_seconds)]


def prepare(cfg: DictConfig) -> tuple[DeficitDataModule, int, ClassifierModule, list[pl.Callback]]:
    """Data, epochs, module and probe callbacks from the config. Everything that can reject the
    config or the data runs here, so a bad value or a bad file is a one-line :class:`ConfigError`."""
    try:
        datamodule = build_datamodule(cfg)
        schedule = cfg.schedule
        epochs = total_epochs(schedule.mode, datamodule.deficit.end, schedule.epochs, schedule.epochs_after_deficit)
        factor = lr_factor(
            schedule.lr_schedule, schedule.lr_gamma, schedule.lr_step_size, schedule.lr_restart,
            datamodule.deficit.end, datamodule.deficit.length,
        )
        model = hydra.utils.instantiate(cfg.model)(input_shape=datamodule.input_shape, num_classes=datamodule.num_classes)
        forward = prepare_model(model, **cfg.performance)
        module = ClassifierModule(model, datamodule.num_classes, hydra.utils.instantiate(cfg.optim), factor, forward)
        probes = [hydra.utils.instantiate(cfg.probes)] if cfg.get("probes") else []
        logger_kind(cfg)  # an unknown logger, or tensorboard without its package
    except (ValueError, OSError, TypeError, InstantiationException) as err:
        cause = err.__cause__ if isinstance(err, InstantiationException) and err.__cause__ else err
        raise ConfigError(" ".join(str(cause).split())) from err
    check_probe_size(cfg, len(datamodule.y_train))
    return datamodule, epochs, module, probes


def resume_point(out_dir: Path, config: dict[str, Any]) -> tuple[Summary | None, Path | None, int | None]:
    """What ``out_dir`` holds: its summary, the checkpoint to resume from and that checkpoint's epoch.
    Raises :class:`ResumeError` (one line) if the folder holds another config's run or a bad file."""
    try:
        previous = load_summary(out_dir)
    except ValueError as err:
        raise ResumeError(f"{err}; delete it to start this run over") from None
    if previous is None:
        return None, None, None
    check_same_run(previous, config, out_dir)
    checkpoint = last_checkpoint(out_dir)
    return previous, checkpoint, checkpoint_epoch(checkpoint) if checkpoint is not None else None


def record_end(out_dir: Path, summary: Summary, error: BaseException) -> None:
    """Write the record of a run that ``error`` ended. If that write fails too (a full disk), the
    training error is still the one raised, with the write error noted on it and logged."""
    try:
        write_summary(out_dir, summary)
    except Exception as write_error:
        note = (f"and the run record {out_dir / SUMMARY_FILE} could not be written "
                f"({type(write_error).__name__}: {write_error}); it still says '{Status.RUNNING}'")
        log.error("run ended by %s: %s %s", type(error).__name__, error, note)
        error.add_note(note)


def steps_per_epoch_to(live: MirrorWandbLogger):
    """A hook that tells the live W&B logger the epoch's length (its epoch axis needs it)."""
    def hook(trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        live.steps_per_epoch = int(trainer.num_training_batches)
    return hook


def mirror_to_wandb(cfg: DictConfig, out_dir: Path, summary: Summary, live: MirrorWandbLogger | None) -> None:
    """End the W&B side of a run, whatever its status: finish the live run, or (offline, or the live
    run failed) write the offline run from the record. Never raises: W&B never fails a run."""
    if logger_kind(cfg) != "wandb":
        return
    if live is not None and end_live_run(live, summary):
        return
    try:
        rows = read_metrics(out_dir)
    except (OSError, ValueError) as err:
        log.warning("no W&B run written: the metrics could not be read (%s)", err)
        return
    write_offline_run(cfg, out_dir, summary, rows)


def numerics_environment(cfg: DictConfig) -> str:
    """What changes float rounding besides the config: the torch build, its CPU threads, the device."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() and cfg.trainer.accelerator != "cpu" else "cpu"
    return f"torch {torch.__version__}, {torch.get_num_threads()} threads, {device}"


def plan_branching(cfg: DictConfig, config: dict[str, Any]) -> BranchPlan | None:
    """This job's branching plan when it is a job of a multirun with ``branching=true``, else ``None``.
    Branching only ever saves time: if the plan cannot be made, the job trains from scratch."""
    if not cfg.get("branching") or not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    run_dir = Path(hydra_cfg.runtime.output_dir)
    depth = len(Path(hydra_cfg.sweep.subdir).parts)
    sweep_dir = Path(*run_dir.parts[: len(run_dir.parts) - depth])
    try:
        return branch_plan(config, run_dir, sweep_dir, hydra_cfg.job.config_name, numerics_environment(cfg))
    except Exception as err:  # noqa: BLE001 - a failed plan costs time, never the run
        log.warning("branching off: the sweep's jobs could not be planned (%s: %s)", type(err).__name__, err)
        return None


def take_branch_point(plan: BranchPlan, out_dir: Path) -> int | None:
    """Start this job from the latest branch point holding its state, if there is one: copies it into
    ``out_dir`` as the checkpoint to resume from. The epochs it covers, or ``None``."""
    start = plan.start_point()
    if start is None:
        return None
    key, epochs = start
    adopted = plan.store.adopt(key, out_dir)
    if adopted is not None:
        log.info("branching from a sweep sibling's state after epoch %d (%s)", adopted, plan.store.root / key)
    return adopted


def prune_branch_points(plan: BranchPlan | None) -> None:
    if plan is None:
        return
    try:
        deleted = plan.prune()
    except OSError as err:
        log.warning("branch points not pruned: %s", err)
        return
    if deleted:
        log.info("deleted %d branch point(s) no pending job of the sweep needs", len(deleted))


def is_interruption(error: BaseException) -> bool:
    """A stop request, Ctrl+C, or a SystemExit (Lightning's SIGTERM exit, submitit's exit after requeue)."""
    return isinstance(error, (StopRequested, KeyboardInterrupt, SystemExit))


def train(cfg: DictConfig) -> Summary | None:
    """Fit and test one run; write ``summary.json`` (status completed/diverged/failed/interrupted).

    Returns the summary, or ``None`` when another live process holds the run folder (the job is
    skipped and nothing is written). Bad config values, bad data files and a folder that cannot be
    resumed raise a one-line :class:`ConfigError`/:class:`ResumeError` before the folder is claimed.
    A finished run in ``paths.output_dir`` is returned without training; an interrupted one resumes
    from its last checkpoint (see ``critical_periods.resume``). A stop requested by a signal ends the
    run as ``interrupted`` and re-raises (``StopRequested`` or ``SystemExit``).
    """
    quiet_lightning()
    clear_stop()
    out_dir = Path(cfg.paths.output_dir)
    check_config(cfg)
    config = OmegaConf.to_container(cfg, resolve=True)
    previous, _, _ = resume_point(out_dir, config)
    if previous is not None and previous.status in FINISHED:
        log.info("skipped: %s already holds a %s run", out_dir, previous.status)
        return previous
    set_threads(cfg.get("threads"))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, epochs, module, probes = prepare(cfg)

    try:
        lock = RunLock(out_dir)
        lock.acquire()
    except RunFolderBusy as busy:
        log.warning("skipped: %s", busy)
        return None
    try:
        # Authoritative now that the folder is ours (another process may have finished it meanwhile).
        previous, checkpoint, resumed_from = resume_point(out_dir, config)
        plan = plan_branching(cfg, config)
        if previous is not None and previous.status in FINISHED:
            log.info("skipped: %s already holds a %s run", out_dir, previous.status)
            prune_branch_points(plan)
            return previous
        branched_from = previous.branched_from_epoch if previous is not None and checkpoint is not None else None
        resumed = resumed_from is not None
        if checkpoint is None and plan is not None:
            branched_from = take_branch_point(plan, out_dir)
            if branched_from is not None:
                checkpoint = last_checkpoint(out_dir)
                resumed_from = checkpoint_epoch(checkpoint)
        summary = fit_and_test(cfg, out_dir, config, datamodule, epochs, module, probes, previous, checkpoint,
                               resumed_from, plan, branched_from, resumed)
        prune_branch_points(plan)
        return summary
    finally:
        lock.release()


def fit_and_test(cfg: DictConfig, out_dir: Path, config: dict[str, Any], datamodule: DeficitDataModule, epochs: int,
                 module: ClassifierModule, probes: list[pl.Callback], previous: Summary | None,
                 checkpoint: Path | None, resumed_from: int | None, plan: BranchPlan | None = None,
                 branched_from: int | None = None, resumed: bool | None = None) -> Summary:
    """The part of ``train`` that owns the run folder. ``checkpoint`` is the one to start from, after
    epoch ``resumed_from``: this job's own (``resumed``), or a copy of a branch point, the state of a
    sweep sibling after ``branched_from`` epochs (``None``: the job's start was its own)."""
    resumed = resumed_from is not None if resumed is None else resumed
    trim_metrics(out_dir, resumed_from)
    summary = summary_of(cfg, config, datamodule, epochs)
    summary.wandb_id = (previous.wandb_id if previous is not None else None) or wandb_run_id()
    summary.branched_from_epoch = branched_from
    if resumed:
        summary.resumed_from_epoch = resumed_from
        log.info("resuming %s after epoch %d", out_dir, resumed_from)
    if resumed_from is not None:
        for callback in probes:
            callback.at_start = False  # its at-start row is in the record already; once is enough
    write_summary(out_dir, summary)
    loggers = build_loggers(cfg, out_dir)
    branched_now = branched_from is not None and not resumed  # its first rows are a sibling's
    history = read_metrics(out_dir) if branched_now and logger_kind(cfg) == "wandb" else None
    live = start_live_run(cfg, out_dir, summary.wandb_id, history) if logger_kind(cfg) == "wandb" else None
    callbacks = [*probes, *checkpoint_callbacks(cfg, out_dir), StopWhenRequested(), EpochProgress(),
                 StoreRunConfig(config), RandomStates()]
    save_points = plan.save_points() if plan is not None else {}
    if save_points:
        callbacks.append(BranchPoints(plan.store, save_points, out_dir))
    if live is not None:
        loggers.append(live)
        callbacks.append(pl.callbacks.LambdaCallback(on_train_start=steps_per_epoch_to(live)))
    trainer = build_trainer(cfg, epochs, loggers, callbacks)

    with stop_on_signals():
        try:
            started = time.perf_counter()
            trainer.fit(module, datamodule=datamodule, ckpt_path=checkpoint, weights_only=True)
            raise_if_stop_requested()  # a signal in the fit's last moments
            summary.fit_seconds = time.perf_counter() - started
            summary.epochs_trained = trainer.current_epoch
            if module.diverged:
                summary.status = Status.DIVERGED
            else:
                fit_metrics = dict(trainer.callback_metrics)
                test_results = trainer.test(module, datamodule=datamodule, verbose=False)
                raise_if_stop_requested()
                summary.final = final_metrics(fit_metrics, test_results)
                summary.status = Status.DEBUG if cfg.get("debug_run") else Status.COMPLETED
                for logger in loggers:
                    logger.log_metrics(dict(summary.final), step=trainer.global_step)
            for logger in loggers:
                if logger is not live:  # csv/tensorboard write their buffers out (W&B ends below)
                    logger.finalize("success")
        except BaseException as error:
            summary.status = Status.INTERRUPTED if is_interruption(error) else Status.FAILED
            summary.error = f"{type(error).__name__}: {error}"
            summary.traceback = traceback.format_exc()
            record_end(out_dir, summary, error)
            mirror_to_wandb(cfg, out_dir, summary, live)
            raise
    write_summary(out_dir, summary)
    mirror_to_wandb(cfg, out_dir, summary, live)
    log.info("%s: %s, test error %s -> %s", summary.status, out_dir, summary.test_error, out_dir / SUMMARY_FILE)
    return summary


def check_launch(cfg: DictConfig) -> None:
    """A study file used the wrong way: ``sweep=NAME`` without ``-m`` would silently train one run of
    its grid, and ``sweep=wandb/NAME`` is a W&B sweep file, not a Hydra study."""
    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    study = hydra_cfg.runtime.choices.get("sweep")
    if not study:
        return
    if study.startswith("wandb/"):
        raise ConfigError(f"sweep={study} is not allowed: sweeps/wandb/*.yaml are W&B sweep files for `wandb sweep "
                          f"sweeps/{study}.yaml`; the Hydra study is sweep={study.removeprefix('wandb/')} (with -m)")
    if hydra_cfg.mode == RunMode.RUN:
        raise ConfigError(f"sweep={study} is a multirun study: run it with -m (python -m critical_periods.train -m "
                          f"sweep={study}); for one of its jobs, give that job's values without sweep=")


def run_job(cfg: DictConfig) -> float | None:
    """The task of both entry points. Exit codes: 0 done (or skipped), 2 bad input (one line on
    stderr; HYDRA_FULL_ERROR=1 for the traceback), 128 + signal when stopped by a signal (143:
    SIGTERM), 1 any other failure. A multirun stops at the first job that exits non-zero this way."""
    try:
        check_launch(cfg)
        summary = train(cfg)
    except (ConfigError, ResumeError) as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except BaseException as err:
        # Lightning stops on SIGTERM itself too, even where another handler owns the signal (submitit).
        signum = received_signal() or (signal.SIGTERM if isinstance(err, SIGTERMException) else None)
        if signum is not None and is_interruption(err):
            print(f"interrupted by {signal.Signals(signum).name}: {cfg.paths.output_dir} resumes on re-run", file=sys.stderr)
            raise SystemExit(exit_code(signum)) from None
        raise
    return summary.test_error if summary is not None else None


@hydra.main(version_base="1.3", config_path="../../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run_job(cfg)


if __name__ == "__main__":
    main()
