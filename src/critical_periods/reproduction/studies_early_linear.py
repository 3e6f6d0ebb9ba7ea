"""Hu et al. (2020)'s study: not a Hydra multirun of train.py but the early-time runner
(``python -m critical_periods.early_time.run``), whose square loss, NTK parameterisation and per-step
linear-model comparison the Lightning pipeline does not have. ``run`` and ``load`` replace the
multirun and the sweep loading for it; the figure goes to ``<sweep_dir>/analysis/`` for the report."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from critical_periods.early_time.run import CONTROL_DIM, CONTROL_SEEDS, DIMS, SEEDS
from critical_periods.reproduction.study import run_logged

NAME = "early_linear"
QUICK = ("--dims", "20,50", "--seeds", "0", "--control-seeds", "", "--steps", "12", "--num-samples", "2000")


@dataclass(frozen=True)
class EarlyLinearStudy:
    """The fields of ``studies.Study`` (not a subclass: studies.py lists this study, so importing it
    from here would be circular); ``full``/``quick``: one argument tuple per runner command."""

    name: str
    claim: str
    full: tuple[tuple[str, ...], ...]
    quick: tuple[tuple[str, ...], ...]
    protocol: dict[str, Any] = field(default_factory=dict)
    requires: tuple[str, ...] = ()
    model: str = "mlp"
    schedule: str = "constant"

    def missing(self) -> list[str]:
        return []  # the task is generated: nothing to find

    def run(self, out_dir: Path, quick: bool, threads: int | None) -> float:
        """Runs the grid into ``out_dir/<name>`` (finished runs are skipped) and draws the figure;
        returns the wall time in seconds."""
        from critical_periods.reproduction.claims_early_linear import draw_figure, load_runs

        sweep_dir = out_dir / self.name
        env = dict(os.environ)
        if threads is not None:
            env["OMP_NUM_THREADS"] = str(threads)
        started = time.perf_counter()
        for arguments in self.quick if quick else self.full:
            command = [sys.executable, "-m", "critical_periods.early_time.run", "--out", str(sweep_dir), *arguments]
            run_logged(command, env, sweep_dir, f"study {self.name}: the early-time runs")
        runs = load_runs(sweep_dir)
        if runs:
            draw_figure(runs, sweep_dir / "analysis")
        return time.perf_counter() - started


EARLY_LINEAR_STUDIES = (
    EarlyLinearStudy(
        NAME, "Hu et al. 2020: a two-layer erf network vs its linear model under full-batch GD, d = 20, 50, 100",
        full=(("--dims", ",".join(map(str, DIMS)), "--seeds", ",".join(map(str, SEEDS)),
               "--control-seeds", ",".join(map(str, CONTROL_SEEDS)), "--control-dim", str(CONTROL_DIM)),),
        quick=(QUICK,),
        protocol={
            "models": ["two-layer erf network, width 256, NTK parameterisation, mirrored start (f_0 = 0)"],
            "data": "teacher task: x ~ N(0, I_d), y = sign of a width-5 erf teacher, 20,000 train / 2,000 test, a fresh task per seed",
            "input_dims": list(DIMS), "seeds": list(SEEDS), "control_seeds": [f"{s} at d = {CONTROL_DIM}" for s in CONTROL_SEEDS],
            "epochs": "200 full-batch GD steps",
            "training": "full-batch GD on (1/2n) sum (f - y)^2, both layers, lr 0.5 d, 200 steps",
            "linear_model": "f_lin(x) = sqrt(2) zeta beta . x / sqrt(d) (+ nu = 0 for erf), beta_0 = 0, same GD (our derivation of the paper's eq. 11)",
            "probes": "test MSE between the two (and against a shuffled-coefficient linear model) at 30 log-spaced steps and step 10",
            "differs_from_paper": "lr scaled with d (0.5 d) and 200 steps so the whole grid fits the budget on one CPU core; "
                                  "the paper's ~1,000-step window is at a smaller lr; no validation split (nothing is selected)",
            "cost": "268 s on one CPU core for the full grid (12-16 s a run; measured once, load average ~1.1)",
        },
        model="mlp", schedule="constant",
    ),
)
