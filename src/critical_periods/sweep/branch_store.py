"""Branch points on disk: ``<sweep dir>/.branches/<key>/``, one per shared state a job saved.

A branch point is a full Lightning checkpoint (weights, optimiser, lr-scheduler, loop and random
states) and a copy of the job's record up to it (``metrics.jsonl``, ``stiffness.jsonl``, saved
representations), named by the :meth:`Timeline.key` of that state. It is written into a temporary
folder and renamed into place, so a reader sees all of it or none; two jobs that save the same state
at once keep the first. Taking a point copies it into the job's own folder under the store's lock, so
pruning (under the same lock) never removes one that is being copied.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

from critical_periods.record.atomic import write_atomic
from critical_periods.record.layout import BRANCH_STORE_DIR as STORE_DIR
from critical_periods.record.layout import STIFFNESS_FILE
from critical_periods.record.layout import REPRESENTATIONS_DIR
from critical_periods.record.layout import METRICS_FILE
from critical_periods.record.layout import CHECKPOINT_DIR, LAST_CHECKPOINT
from critical_periods.record.lock import exclusive

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.ckpt"
INFO_FILE = "branch.json"
# What a branch point carries of the job's record; a job adopting it trims them to its epoch as a resume does.
RECORD_FILES = (METRICS_FILE, STIFFNESS_FILE)
RECORD_DIRS = (REPRESENTATIONS_DIR,)
# A temporary folder this old was left by a job killed while saving (a save takes seconds).
STALE_SECONDS = 3600


def _copy_file(source: Path, target: Path) -> None:
    with open(source, "rb") as f:
        write_atomic(target, lambda out: shutil.copyfileobj(f, out))


class BranchStore:
    """The branch points of the sweep in ``sweep_dir``."""

    def __init__(self, sweep_dir: Path | str) -> None:
        self.root = Path(sweep_dir) / STORE_DIR
        self.lock_path = self.root / ".lock"

    def points(self) -> dict[str, int]:
        """Every complete branch point: key -> epochs trained."""
        if not self.root.is_dir():
            return {}
        found = {}
        for info in self.root.glob(f"*/{INFO_FILE}"):
            try:
                found[info.parent.name] = int(json.loads(info.read_text())["epoch"])
            except (OSError, ValueError, KeyError):
                continue  # being removed
        return found

    def has(self, key: str) -> bool:
        return (self.root / key / INFO_FILE).is_file()

    def publish(self, key: str, epoch: int, checkpoint: Path, run_dir: Path) -> bool:
        """Make ``checkpoint`` (moved, not copied) and ``run_dir``'s record a branch point; ``False``
        if another job published the same state first (then ``checkpoint`` is deleted)."""
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".{key}.{os.getpid()}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            os.replace(checkpoint, staging / CHECKPOINT_FILE)
            for name in RECORD_FILES:
                if (run_dir / name).is_file():
                    shutil.copyfile(run_dir / name, staging / name)
            for name in RECORD_DIRS:
                if (run_dir / name).is_dir():
                    shutil.copytree(run_dir / name, staging / name)
            # Written last: a folder without it is not a branch point.
            (staging / INFO_FILE).write_text(json.dumps({"epoch": epoch, "from": str(run_dir)}))
            os.rename(staging, self.root / key)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            if self.has(key):  # the same state, saved by another job a moment earlier
                return False
            raise
        log.info("saved branch point after epoch %d for other jobs of the sweep: %s", epoch, self.root / key)
        return True

    def adopt(self, key: str, run_dir: Path) -> int | None:
        """Copy branch point ``key`` into ``run_dir`` as its resume point (record files, then
        ``checkpoints/last.ckpt`` last); the epochs it holds, or ``None`` if it is gone."""
        with exclusive(self.lock_path):
            point = self.root / key
            if not (point / INFO_FILE).is_file():
                return None
            epoch = int(json.loads((point / INFO_FILE).read_text())["epoch"])
            for name in RECORD_FILES:
                if (point / name).is_file():
                    _copy_file(point / name, run_dir / name)
            for name in RECORD_DIRS:
                for source in sorted((point / name).glob("*")):
                    _copy_file(source, run_dir / name / source.name)
            _copy_file(point / CHECKPOINT_FILE, run_dir / CHECKPOINT_DIR / f"{LAST_CHECKPOINT}.ckpt")
        return epoch

    def prune(self, still_needed: set[str]) -> list[str]:
        """Delete the branch points not in ``still_needed`` (and temporary folders left by killed
        jobs); the keys deleted."""
        if not self.root.is_dir():
            return []
        deleted = []
        with exclusive(self.lock_path):
            for key in self.points():
                if key not in still_needed:
                    shutil.rmtree(self.root / key, ignore_errors=True)
                    deleted.append(key)
            for staging in self.root.glob(".*.tmp"):
                if time.time() - staging.stat().st_mtime > STALE_SECONDS:
                    shutil.rmtree(staging, ignore_errors=True)
        return deleted

