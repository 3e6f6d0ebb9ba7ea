"""The studies the reproduction runs: each is one or more Hydra multiruns into one sweep folder.

Every study uses the project's own sweeps (``sweeps/*.yaml``) with a grid given on the command
line; ``quick`` is a cut-down grid (minutes in all) for the slow-marked test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Study:
    name: str
    claim: str
    full: tuple[tuple[str, ...], ...]   # one tuple of overrides per multirun command
    quick: tuple[tuple[str, ...], ...]


STUDIES = (
    Study(
        "kinds",
        "Achille Fig. 1-2: removal sweep for blur, vertical flip, label permutation and noise",
        full=(
            ("sweep=kinds", "deficit=blur,vertical_flip,label_permutation,noise", "deficit.length=20,40,60,80",
             "seed=0,1", "probes=none"),
            ("sweep=kinds", "deficit=none", "deficit.length=0", "seed=0,1", "probes=none"),
        ),
        quick=(
            ("sweep=kinds", "deficit=blur,vertical_flip", "deficit.length=4", "seed=0",
             "schedule.epochs_after_deficit=4", "probes=none"),
            ("sweep=kinds", "deficit=none", "deficit.length=0", "seed=0", "schedule.epochs_after_deficit=4", "probes=none"),
        ),
    ),
    Study(
        "constant_lr",
        "The blur removal sweep again with a constant learning rate (is it only the lr decay?)",
        full=(("sweep=removal", "schedule.lr_schedule=constant", "deficit.length=0,20,40,60,80", "seed=0,1", "probes=none"),),
        quick=(("sweep=removal", "schedule.lr_schedule=constant", "deficit.length=0,4", "seed=0",
                "schedule.epochs_after_deficit=4", "probes=none"),),
    ),
    Study(
        "fisher_window",
        "Achille Fig. 4: Fisher trace without deficit, beside the sensitivity to a 10-epoch blur window",
        full=(
            ("sweep=window", "deficit=blur", "deficit.onset=0,10,20,30,40,50,60", "seed=0,1", "probes=none"),
            ("sweep=window", "deficit=none", "deficit.onset=0", "seed=0,1", "probes=fisher"),
        ),
        quick=(
            ("sweep=window", "deficit=blur", "deficit.onset=0,4", "deficit.length=2", "schedule.epochs=8", "seed=0", "probes=none"),
            ("sweep=window", "deficit=none", "deficit.onset=0", "deficit.length=2", "schedule.epochs=8", "seed=0", "probes=fisher"),
        ),
    ),
    Study(
        "break_even_lr",
        "Jastrzebski conjecture 1: three learning rates, every break-even probe",
        full=(("sweep=break_even_lr", "optim.lr=0.01,0.03,0.1", "seed=0"),),
        quick=(("sweep=break_even_lr", "optim.lr=0.01,0.1", "seed=0", "schedule.epochs=3", "probes.early_steps=3",
                "probes.early_until_step=20"),),
    ),
    Study(
        "break_even_batch",
        "Jastrzebski conjecture 2: two batch sizes at one learning rate, every break-even probe",
        full=(("sweep=break_even_batch", "data.batch_size=32,512", "seed=0"),),
        quick=(("sweep=break_even_batch", "data.batch_size=32,512", "seed=0", "schedule.epochs=3", "probes.early_steps=3",
                "probes.early_until_step=20"),),
    ),
)


def multirun_command(overrides: tuple[str, ...], sweep_dir: Path, extra: tuple[str, ...]) -> list[str]:
    return [sys.executable, "-m", "critical_periods.train", "-m", *overrides, *extra, f"hydra.sweep.dir={sweep_dir}"]


def run_study(study: Study, out_dir: Path, quick: bool, extra: tuple[str, ...], threads: int | None) -> float:
    """Run every multirun of ``study`` into ``out_dir/<name>``; returns the wall time in seconds.
    Finished jobs are skipped (the sweeps are resumable), so an interrupted reproduction continues."""
    sweep_dir = out_dir / study.name
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
        extra = (*extra, f"threads={threads}")
    started = time.perf_counter()
    for overrides in study.quick if quick else study.full:
        command = multirun_command(overrides, sweep_dir, extra)
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        (sweep_dir / "logs").mkdir(parents=True, exist_ok=True)
        log = sweep_dir / "logs" / f"{int(time.time() * 1000)}.log"
        log.write_text(" ".join(command) + "\n\n" + result.stdout + result.stderr)
        if result.returncode != 0:
            raise RuntimeError(f"study {study.name}: a multirun failed (exit {result.returncode}); see {log}")
    return time.perf_counter() - started
