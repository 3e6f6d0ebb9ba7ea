"""The one object a training job talks to about branching: where it starts, what it saves for its
siblings, what it deletes when done. A job outside a multirun (or with ``branching=false``) gets one
that does nothing, so the training code has no branching cases of its own."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from critical_periods.record.resume import ResumePoint, checkpoint_epoch, last_checkpoint
from critical_periods.sweep.branch_plan import BranchPlan, branch_plan
from critical_periods.sweep.launch import multirun_dirs

log = logging.getLogger(__name__)


class JobBranching:
    """A job's part in its sweep's branching (see ``critical_periods.sweep``)."""

    def __init__(self, plan: BranchPlan | None = None) -> None:
        self.plan = plan

    @classmethod
    def for_job(cls, cfg: DictConfig, config: dict[str, Any], environment: str) -> JobBranching:
        """This job's branching when it is a job of a multirun with ``branching=true``. Branching only
        ever saves time: if the plan cannot be made, the job trains from scratch (logged)."""
        dirs = multirun_dirs() if cfg.get("branching") else None
        if dirs is None:
            return cls()
        from hydra.core.hydra_config import HydraConfig

        run_dir, sweep_dir = dirs
        try:
            return cls(branch_plan(config, run_dir, sweep_dir, HydraConfig.get().job.config_name, environment))
        except Exception as err:  # noqa: BLE001 - a failed plan costs time, never the run
            log.warning("branching off: the sweep's jobs could not be planned (%s: %s)", type(err).__name__, err)
            return cls()

    def start(self, point: ResumePoint, out_dir: Path) -> ResumePoint:
        """``point``, or, for a job with no checkpoint of its own, the latest branch point holding its
        state, copied into ``out_dir`` as the checkpoint to resume from."""
        if point.checkpoint is not None or self.plan is None:
            return point
        start = self.plan.start_point()
        if start is None:
            return point
        adopted = self.plan.store.adopt(start[0], out_dir)
        if adopted is None:
            return point
        log.info("branching from a sweep sibling's state after epoch %d (%s)", adopted, self.plan.store.root / start[0])
        checkpoint = last_checkpoint(out_dir)
        return ResumePoint(point.previous, checkpoint, checkpoint_epoch(checkpoint), branched_from=adopted, resumed=False)

    def callbacks(self, out_dir: Path) -> list:
        """The callback that saves the branch points unfinished siblings share with this job."""
        save_points = self.plan.save_points() if self.plan is not None else {}
        if not save_points:
            return []
        from critical_periods.sweep.branch_points import BranchPoints

        return [BranchPoints(self.plan.store, save_points, out_dir)]

    def prune(self) -> None:
        """Delete the branch points no unfinished job of the sweep needs any more."""
        if self.plan is None:
            return
        try:
            deleted = self.plan.prune()
        except OSError as err:
            log.warning("branch points not pruned: %s", err)
            return
        if deleted:
            log.info("deleted %d branch point(s) no pending job of the sweep needs", len(deleted))
