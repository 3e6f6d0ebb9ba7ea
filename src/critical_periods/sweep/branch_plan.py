"""Exact checkpoint branching within one sweep: which branch point a job starts from, which ones it
saves for the others, and which ones nobody needs any more.

Every job decides for itself from the sweep's job list (``siblings``) and the branch points on disk
(``store``), so correctness never depends on the launch order, the launcher or parallelism: a job
whose trunk is not there yet trains it itself (and saves it for the jobs after it). Under the basic
launcher, jobs run one after another in Hydra's order and every shared prefix is trained once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from critical_periods.sweep.siblings import Job, sweep_jobs
from critical_periods.sweep.branch_store import BranchStore
from critical_periods.sweep.timeline import Timeline, shared_epochs, timeline
from critical_periods.record.summary import FINISHED, load_summary
from critical_periods.record.result_keys import differing_keys

log = logging.getLogger(__name__)


def is_finished(run_dir: Path) -> bool:
    try:
        summary = load_summary(run_dir)
    except ValueError:
        return False
    return summary is not None and summary.status in FINISHED


@dataclass
class BranchPlan:
    """This job's :class:`Timeline`, the other jobs' and the sweep's branch points."""

    store: BranchStore
    me: Timeline
    others: list[tuple[Job, Timeline]]

    def start_point(self) -> tuple[str, int] | None:
        """The latest branch point on disk that holds this job's own state: ``(key, epochs)``."""
        usable = [(epoch, key) for key, epoch in self.store.points().items()
                  if 0 < epoch <= self.me.epochs and self.me.key(epoch) == key]
        if not usable:
            return None
        epoch, key = max(usable)
        return key, epoch

    def save_points(self) -> dict[int, str]:
        """Epochs after which this job's state is another unfinished job's too: epochs -> key."""
        points = {}
        for job, other in self.others:
            shared = shared_epochs(self.me, other)
            if shared > 0 and not is_finished(job.run_dir):
                points[shared] = self.me.key(shared)
        return points

    def prune(self) -> list[str]:
        """Delete the branch points no unfinished job of the sweep can start from."""
        pending = [other for job, other in self.others if not is_finished(job.run_dir)]
        needed = {key for key, epoch in self.store.points().items()
                  if any(epoch <= t.epochs and t.key(epoch) == key for t in pending)}
        return self.store.prune(needed)


def branch_plan(config: dict[str, Any], run_dir: Path, sweep_dir: Path, config_name: str,
                environment: str = "") -> BranchPlan | None:
    """The plan of the job whose resolved config is ``config``, or ``None`` (with the reason logged)
    when the sweep's jobs cannot be known or composing them does not give back this job's config.
    ``environment``: see :func:`timeline` (the same for every job of one launch)."""
    store = BranchStore(sweep_dir)
    jobs = sweep_jobs(sweep_dir, config_name, cache_dir=store.root)
    if jobs is None:
        log.info("branching off: the jobs of the sweep in %s cannot be listed (a sweeper other than "
                 "Hydra's basic one, or no multirun.yaml)", sweep_dir)
        return None
    run_dir = Path(run_dir).resolve()
    mine = [job for job in jobs if job.run_dir.resolve() == run_dir]
    if len(mine) != 1:
        log.warning("branching off: %s is not one of the jobs its sweep lists", run_dir)
        return None
    differing = differing_keys(mine[0].config, config)
    if differing:
        log.warning("branching off: composing this job again gives another config (%s)", ", ".join(differing))
        return None
    others = [(job, timeline(job.config, environment)) for job in jobs if job is not mine[0]]
    return BranchPlan(store, timeline(config, environment), others)


def branched_starts(timelines: list[Timeline]) -> list[int]:
    """The epochs each job would take over from a branch point when the jobs run one after another
    in this order (the basic launcher), following the rules :class:`BranchPlan` applies on disk: a
    job starts from the latest saved state that is its own, and saves (as it trains past them) the
    states it shares with the jobs after it."""
    saved: dict[str, int] = {}
    starts = []
    for i, me in enumerate(timelines):
        start = max((e for key, e in saved.items() if e <= me.epochs and me.key(e) == key), default=0)
        starts.append(start)
        for later in timelines[i + 1:]:
            shared = shared_epochs(me, later)
            if shared > start:
                saved.setdefault(me.key(shared), shared)
    return starts
