"""Which jobs of a multirun form a seed group, and training one group: ``train.train`` for S seeds
at once, writing into every seed's folder what its lone run would write there.

Each seed is prepared exactly as ``train.train`` prepares it (``seed_everything(seed)``, then data
and model), so its initial weights, data order and deficit draws are its lone run's. Seeds whose
folders are finished are skipped; the others are claimed, and those that start from the same point
(fresh, or a checkpoint after the same epoch) train together.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import time
import traceback
from contextlib import contextmanager
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from critical_periods.callbacks.stop import StopWhenRequested
from critical_periods.build import build_job, build_trainer, quiet_lightning
from critical_periods.config.validation import check_config
from critical_periods.fitting import final_metrics, is_interruption, record_end
from critical_periods.record.layout import SUMMARY_FILE
from critical_periods.record.lock import RunFolderBusy, RunLock
from critical_periods.record.resume import ResumePoint
from critical_periods.record.resume import resume_point as resume_point_of
from critical_periods.record.resume import trim_metrics
from critical_periods.record.summary import FINISHED, Summary, write_summary
from critical_periods.seeds.branch_points import GroupBranchPoints
from critical_periods.seeds.checkpoint import GroupCheckpoint, group_checkpoint
from critical_periods.seeds.data import StackedDataModule
from critical_periods.seeds.fanout import SeedCallbacks, SeedLoggers, seed_fit_seconds, seed_row
from critical_periods.seeds.module import StackedClassifier
from critical_periods.seeds.stacked import not_vectorisable, stack_models
from critical_periods.signals import stop_on_signals
from critical_periods.stopping import clear_stop, raise_if_stop_requested
from critical_periods.sweep.branching import JobBranching
from critical_periods.threads import numerics_environment, set_threads
from critical_periods.tracking.loggers import build_loggers, uses_wandb
from critical_periods.tracking.run_tracking import RunTracking
from critical_periods.tracking.wandb_run import wandb_run_id
from critical_periods.vocabulary import RunStatus as Status

log = logging.getLogger(__name__)


def resume_point(out_dir: Path, config: dict):
    """``(previous summary, checkpoint, its epoch)`` of a seed's folder (record.resume)."""
    point = resume_point_of(out_dir, config)
    return point.previous, point.checkpoint, point.epoch


def prepare(cfg: DictConfig):
    """``(datamodule, epochs, module, probes)`` of one seed, built as a lone run builds them."""
    job = build_job(cfg, OmegaConf.to_container(cfg, resolve=True), Path(cfg.paths.output_dir))
    return job.datamodule, job.epochs, job.module, job.probes


def summary_of(cfg: DictConfig, config: dict, datamodule, epochs: int) -> Summary:
    deficit = datamodule.deficit
    return Summary(status=Status.RUNNING, deficit=deficit.kind, onset=deficit.onset, length=deficit.length,
                   epochs=epochs, seed=cfg.seed, name=cfg.name, config=config, threads=torch.get_num_threads())


def mirror_to_wandb(cfg: DictConfig, out_dir: Path, summary: Summary, live: None) -> None:
    """W&B's side of a seed's end: its offline run written from the record (never raises)."""
    tracking = RunTracking(cfg, out_dir)
    tracking.end(summary)

GROUPED_KEY = "seed"


def group_key(job_config: DictConfig) -> str:
    """What a job's config says besides its seed (``hydra`` and ``seed`` left out, interpolations
    unresolved: ``${seed}`` reads the same in every job). Jobs with equal keys form a group."""
    plain = OmegaConf.to_container(job_config, resolve=False)
    plain.pop("hydra", None)
    plain.pop(GROUPED_KEY, None)
    return OmegaConf.to_yaml(OmegaConf.create(plain), sort_keys=True)


def plan_groups(job_configs: Sequence[DictConfig], max_group: int) -> list[list[int]]:
    """Indices of the jobs, in groups of at most ``max_group`` jobs differing only in seed, in order
    of each group's first job (so a sweep's order is kept as far as grouping allows)."""
    if not isinstance(max_group, int) or max_group < 1:
        raise ValueError(f"hydra.launcher.max_group={max_group!r} is not allowed: it must be a whole number >= 1")
    by_key: dict[str, list[int]] = {}
    for index, job_config in enumerate(job_configs):
        by_key.setdefault(group_key(job_config), []).append(index)
    groups = []
    for members in by_key.values():
        groups.extend(members[i : i + max_group] for i in range(0, len(members), max_group))
    return sorted(groups, key=lambda g: g[0])


@dataclass
class Member:
    """One seed of a group, from its resolved config to its record."""

    index: int
    cfg: DictConfig
    out_dir: Path
    config: dict[str, Any]
    hydra_config: DictConfig | None = None
    prepared: tuple | None = None  # (datamodule, epochs, ClassifierModule, probe callbacks)
    point: ResumePoint = field(default_factory=ResumePoint)  # where it starts: fresh, its checkpoint, a branch point
    branching: JobBranching = field(default_factory=JobBranching)
    lock: RunLock | None = None
    summary: Summary | None = None
    loggers: list = field(default_factory=list)


def pending_members(cfgs: Sequence[DictConfig], hydra_configs: Sequence[DictConfig] | None,
                    results: list[Summary | None]) -> list[Member]:
    """The jobs still to train; a finished job's summary goes straight into ``results``."""
    pending: list[Member] = []
    for index, cfg in enumerate(cfgs):
        out_dir = Path(cfg.paths.output_dir)
        check_config(cfg)
        config = OmegaConf.to_container(cfg, resolve=True)
        previous, _, _ = resume_point(out_dir, config)
        if previous is not None and previous.status in FINISHED:
            log.info("skipped: %s already holds a %s run", out_dir, previous.status)
            results[index] = previous
            continue
        pending.append(Member(index, cfg, out_dir, config, hydra_configs[index] if hydra_configs else None))
    return pending


def prepare_members(pending: list[Member]) -> bool:
    """Build every seed as its lone run would (seeded first); ``False`` if the model cannot be
    vectorised (said once)."""
    for member in pending:
        pl.seed_everything(member.cfg.seed, workers=True, verbose=False)
        member.prepared = prepare(member.cfg)
        if member is pending[0]:
            reason = not_vectorisable(member.prepared[2].model)
            if reason is not None:
                log.info("seeds: this group trains one seed after another: %s cannot be vectorised", reason)
                return False
    return True


def claim_folders(pending: list[Member]) -> list[Member]:
    """The members whose run folders this process could lock (the others are skipped, as lone runs)."""
    claimed: list[Member] = []
    for member in pending:
        lock = RunLock(member.out_dir)
        try:
            lock.acquire()
        except RunFolderBusy as busy:
            log.warning("skipped: %s", busy)
            continue
        member.lock = lock
        claimed.append(member)
    return claimed


def start_points(claimed: list[Member], results: list[Summary | None]) -> dict[int | None, list[Member]]:
    """The claimed members by the epoch they start after. As ``train.train``: authoritative now that
    the folders are ours; a seed without a checkpoint of its own starts from the latest branch point
    holding its state, so the seeds of a group share their branch epochs when earlier jobs saved them."""
    starts: dict[int | None, list[Member]] = {}
    for member in claimed:
        with as_job(member):
            member.branching = JobBranching.for_job(member.cfg, member.config,
                                                    numerics_environment(member.cfg.trainer.accelerator))
        point = resume_point_of(member.out_dir, member.config)
        if point.finished:
            log.info("skipped: %s already holds a %s run", member.out_dir, point.previous.status)
            results[member.index] = point.previous
            continue
        member.point = member.branching.start(point, member.out_dir)
        starts.setdefault(member.point.epoch, []).append(member)
    return starts


def train_group(cfgs: Sequence[DictConfig], hydra_configs: Sequence[DictConfig] | None = None) -> list[Summary | None] | None:
    """Train the jobs ``cfgs`` (resolved configs differing only in seed) as one vectorised model.

    Returns each job's summary as ``train.train`` would (``None``: another process holds its
    folder), or ``None`` for the whole group when the model cannot be vectorised (the caller then
    runs the jobs one after another). ``hydra_configs``: each job's full config while it ran under
    Hydra (W&B names the run from it).
    """
    quiet_lightning()
    clear_stop()
    results: list[Summary | None] = [None] * len(cfgs)
    pending = pending_members(cfgs, hydra_configs, results)
    if not pending:
        return results
    set_threads(pending[0].cfg.get("threads"))
    if not prepare_members(pending):
        return None
    claimed: list[Member] = []
    try:
        claimed = claim_folders(pending)
        for resumed_from, members in start_points(claimed, results).items():
            fit_and_test_group(members, resumed_from)
            for member in members:
                results[member.index] = member.summary
        for member in claimed:
            member.branching.prune()
    finally:
        for member in claimed:
            member.lock.release()
    return results


def start_records(members: list[Member], resumed_from: int | None) -> None:
    """``fit_and_test``'s start of the record, for every seed: metrics cut back to the checkpoint,
    the summary saying ``running``, the loggers."""
    for member in members:
        datamodule, epochs, _, probes = member.prepared
        trim_metrics(member.out_dir, resumed_from)
        summary = summary_of(member.cfg, member.config, datamodule, epochs)
        previous = member.point.previous
        summary.wandb_id = (previous.wandb_id if previous is not None else None) or wandb_run_id()
        summary.branched_from_epoch = member.point.branched_from
        if member.point.resumed:
            summary.resumed_from_epoch = resumed_from
            log.info("resuming %s after epoch %d", member.out_dir, resumed_from)
        if resumed_from is not None:
            for callback in probes:
                callback.at_start = False  # its at-start row is in the record already
        write_summary(member.out_dir, summary)
        member.summary = summary
        member.loggers = build_loggers(member.cfg, member.out_dir)


def group_trainer_config(cfg: DictConfig, checkpointed: bool) -> DictConfig:
    """The first seed's config for the group's trainer. Every seed's checkpoint is
    :class:`GroupCheckpoint`'s; without one, Lightning must not add its own."""
    if checkpointed:
        return cfg
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.trainer.enable_checkpointing = False
    return cfg


def group_trainer(members: list[Member]):
    """``(trainer, module, datamodule, seed_callbacks)`` of the group, built as ``build`` builds a
    lone run's: the stacked model, per-seed probes, loggers, checkpoints and branch points."""
    first = members[0]
    datamodule0, epochs, module0, _ = first.prepared
    lone_models = [member.prepared[2].model for member in members]
    module = StackedClassifier(stack_models(lone_models), datamodule0.num_classes,
                               hydra.utils.instantiate(first.cfg.optim), module0.lr_factor)
    datamodule = StackedDataModule([member.prepared[0] for member in members])
    run_dirs = [member.out_dir for member in members]
    seed_callbacks = SeedCallbacks([member.prepared[3] for member in members], lone_models, datamodule.datamodules,
                                   [member.loggers for member in members], run_dirs)
    callbacks: list[pl.Callback] = [seed_callbacks, StopWhenRequested()]
    every = first.cfg.checkpoint.every_n_epochs

    def saves(s: int, epoch: int) -> bool:
        return module.diverged[s] is None or module.diverged[s] >= epoch

    checkpoint = GroupCheckpoint(run_dirs, [m.config for m in members], every, first.cfg.checkpoint.min_seconds, saves) if every else None
    callbacks.extend([checkpoint] if checkpoint else [])
    branchings = [member.branching for member in members]
    if GroupBranchPoints.needed(branchings):
        callbacks.append(GroupBranchPoints(branchings, run_dirs, [m.config for m in members],
                                           checkpoint.callback_states if checkpoint else None, saves))
    fanout = SeedLoggers([member.loggers for member in members], stopped_after=lambda s: module.diverged[s])
    trainer = build_trainer(group_trainer_config(first.cfg, bool(every)), epochs, [fanout], callbacks)
    return trainer, module, datamodule, seed_callbacks


def record_outcome(members: list[Member], trainer, module, fit_metrics: dict, test_results: list[dict],
                   fit_seconds: list[float]) -> None:
    """Each seed's end in its summary (diverged, or completed with its final numbers) and loggers."""
    for s, member in enumerate(members):
        summary = member.summary
        summary.fit_seconds = fit_seconds[s]  # its probes and its share of the rest: sums over runs stay true
        if module.diverged[s] is not None:
            summary.epochs_trained = module.diverged[s] + 1
            summary.status = Status.DIVERGED
            continue
        summary.epochs_trained = trainer.current_epoch
        summary.final = final_metrics(seed_row(fit_metrics, s), [seed_row(test_results[0], s)])
        summary.status = Status.DEBUG if member.cfg.get("debug_run") else Status.COMPLETED
        for logger in member.loggers:
            logger.log_metrics(dict(summary.final), step=trainer.global_step)
    for member in members:
        for logger in member.loggers:
            logger.finalize("success")


def record_failure(members: list[Member], error: BaseException) -> None:
    for member in members:
        summary = member.summary
        summary.status = Status.INTERRUPTED if is_interruption(error) else Status.FAILED
        summary.error = f"{type(error).__name__}: {error}"
        summary.traceback = traceback.format_exc()
        record_end(member.out_dir, summary, error)
        with hydra_config_of(member):
            mirror_to_wandb(member.cfg, member.out_dir, summary, None)


def group_checkpoint_path(members: list[Member], resumed_from: int | None, scratch: str) -> Path | None:
    """The seeds' own checkpoints (of epoch ``resumed_from``) as one group checkpoint in ``scratch``."""
    if resumed_from is None:
        return None
    seeds = [torch.load(m.point.checkpoint, map_location="cpu", weights_only=True) for m in members]
    path = Path(scratch) / "group.ckpt"
    torch.save(group_checkpoint(seeds), path)
    return path


def fit_and_test_group(members: list[Member], resumed_from: int | None) -> None:
    """``train.fit_and_test`` for the seeds ``members``, which start from the same epoch."""
    start_records(members, resumed_from)
    trainer, module, datamodule, seed_callbacks = group_trainer(members)
    log.info("seeds: training %d seeds as one vectorised model (%s)", len(members),
             ", ".join(f"seed={m.cfg.seed}" for m in members))
    with stop_on_signals(), tempfile.TemporaryDirectory(prefix="seed-group-") as scratch:
        try:
            ckpt_path = group_checkpoint_path(members, resumed_from, scratch)
            started = time.perf_counter()
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
            raise_if_stop_requested()
            seconds = time.perf_counter() - started
            fit_metrics = dict(trainer.callback_metrics)
            alive = [s for s in range(len(members)) if module.diverged[s] is None]
            test_results = trainer.test(module, datamodule=datamodule, verbose=False) if alive else [{}]
            raise_if_stop_requested()
            record_outcome(members, trainer, module, fit_metrics, test_results,
                           seed_fit_seconds(seconds, seed_callbacks.seconds))
        except BaseException as error:
            record_failure(members, error)
            raise
    for member in members:
        write_summary(member.out_dir, member.summary)
        with hydra_config_of(member):
            mirror_to_wandb(member.cfg, member.out_dir, member.summary, None)
        with job_log(member):
            log.info("%s: %s, test error %s -> %s", member.summary.status, member.out_dir, member.summary.test_error,
                     member.out_dir / SUMMARY_FILE)


@contextmanager
def job_log(member: Member):
    """Within it, log lines also go to the member's job log file (``<job name>.log``, as under the
    basic launcher, where the whole run logs there)."""
    if member.hydra_config is None:
        yield
        return
    handler = logging.FileHandler(member.out_dir / f"{member.hydra_config.hydra.job.name}.log")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


@contextmanager
def as_job(member: Member):
    """Within it, ``HydraConfig`` is the member's job's (branching finds its job and sweep folders there)."""
    if member.hydra_config is None:
        yield
        return
    instance = HydraConfig.instance()
    saved = instance.cfg
    instance.set_config(member.hydra_config)
    try:
        yield
    finally:
        instance.cfg = saved


class hydra_config_of:
    """Within it, ``HydraConfig`` is the member's job's (W&B names the run from its overrides)."""

    def __init__(self, member: Member) -> None:
        self.member = member

    def __enter__(self) -> None:
        if self.member.hydra_config is not None and uses_wandb(self.member.cfg):
            self._saved = HydraConfig.instance().cfg
            HydraConfig.instance().set_config(self.member.hydra_config)

    def __exit__(self, *exc) -> None:
        if self.member.hydra_config is not None and uses_wandb(self.member.cfg):
            HydraConfig.instance().cfg = self._saved
