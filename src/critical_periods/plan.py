"""What a sweep will cost, before anything is submitted:

    python -m critical_periods.plan -m sweep=removal [overrides]          (the multirun's own arguments)
    python -m critical_periods.plan -m sweep=removal --time               (+ times two epochs of its first job)
    python -m critical_periods.plan -m sweep=achille_cifar10 --seconds-per-epoch 14 --seconds-per-job 60

Prints the number of jobs and the epochs they train, with branching (each shared prefix trained once,
jobs run in Hydra's order; see ``critical_periods.sweep``) and without. Given a time per epoch,
measured here (``--time``: the sweep's first job for two epochs, one with its deficit, with its
probes, on this machine) or given (``--seconds-per-epoch``, e.g. timed on the cluster's GPU), it also
estimates device-hours. It composes every job's config exactly as the multirun would, so a bad
override fails here too; it launches nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from critical_periods.config.paths import CONF_DIR

CONFIG_NAME = "train"


@dataclass
class SweepPlan:
    jobs: list[tuple[str, ...]]       # each job's overrides, in launch order
    epochs: list[int]                 # each job's epochs
    taken_over: list[int]             # epochs each job takes from a branch point (basic launcher order)
    branching: bool                   # the sweep's `branching` setting

    @property
    def total(self) -> int:
        return sum(self.epochs)

    @property
    def total_branched(self) -> int:
        return sum(e - t for e, t in zip(self.epochs, self.taken_over)) if self.branching else self.total


def plan_sweep(arguments: list[str]) -> SweepPlan:
    """Compose the multirun of ``arguments`` (overrides, as given after ``-m``) and plan its jobs."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode
    from omegaconf import open_dict

    from critical_periods.sweep.branch_plan import branched_starts
    from critical_periods.sweep.siblings import compose_job, grid
    from critical_periods.sweep.timeline import timeline

    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        sweep_config = GlobalHydra.instance().hydra.compose_config(
            config_name=CONFIG_NAME, overrides=arguments, run_mode=RunMode.MULTIRUN, with_log_configuration=False,
        )
        with open_dict(sweep_config):
            sweep_config.hydra.overrides.task = arguments  # as Hydra records a multirun's command line
        overrides = grid(sweep_config)
        sweep_dir = Path(tempfile.gettempdir())  # job folders are not used here
        jobs = [compose_job(job, CONFIG_NAME, sweep_dir) for job in overrides]
    timelines = [timeline(job.config) for job in jobs]
    branching = all(job.config.get("branching", False) for job in jobs)
    return SweepPlan([job.overrides for job in jobs], [t.epochs for t in timelines], branched_starts(timelines), branching)


# Two epochs of a job, its deficit on in the first: what --time runs (keys replaced in the job's overrides).
TIMING_OVERRIDES = ("schedule.mode=fixed", "schedule.epochs=2", "deficit.onset=0", "deficit.length=1",
                    "logger=none", "checkpoint.every_n_epochs=0", "branching=false")


def time_first_job(job_overrides: tuple[str, ...]) -> tuple[float, float]:
    """Seconds per epoch and per-job overhead (start-up, data, test) of the sweep's first job, run
    here for two epochs (its deficit on in the first), with its probes, without W&B. It runs as a
    one-job multirun (a study file refuses a plain run), its grid pinned by the job's own values."""
    replaced = {o.split("=")[0] for o in TIMING_OVERRIDES}
    overrides = [o for o in job_overrides if o.split("=")[0].lstrip("+~") not in replaced] + list(TIMING_OVERRIDES)
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "critical_periods.train", "-m", *overrides,
                                 f"hydra.sweep.dir={out}"], capture_output=True, text=True)
        wall = time.perf_counter() - started
        summaries = list(Path(out).glob("*/summary.json"))
        if result.returncode != 0 or len(summaries) != 1:
            raise SystemExit(f"error: timing the first job failed:\n{result.stderr.strip()[-2000:]}")
        summary = json.loads(summaries[0].read_text())
    return summary["fit_seconds"] / 2, max(0.0, wall - summary["fit_seconds"])


def hours(plan: SweepPlan, epochs: int, per_epoch: float, per_job: float) -> float:
    return (epochs * per_epoch + len(plan.jobs) * per_job) / 3600


def report(plan: SweepPlan, per_epoch: float | None, per_job: float, list_jobs: bool) -> str:
    lines = [f"{len(plan.jobs)} jobs, {plan.total} epochs without branching"]
    if plan.branching:
        saved = plan.total / plan.total_branched if plan.total_branched else float("inf")
        lines.append(f"{plan.total_branched} epochs with branching (the default; {saved:.2f}x fewer), "
                     f"jobs run one after another in Hydra's order")
    else:
        lines.append("branching=false: every job trains all its epochs")
    if list_jobs:
        for overrides, epochs, taken in zip(plan.jobs, plan.epochs, plan.taken_over):
            shared = f", takes over {taken}" if plan.branching and taken else ""
            lines.append(f"  {' '.join(overrides) or '(no overrides)'}: {epochs} epochs{shared}")
    if per_epoch is not None:
        lines.append(f"at {per_epoch:.3g} s per epoch and {per_job:.3g} s per job: "
                     f"{hours(plan, plan.total, per_epoch, per_job):.3g} device-hours without branching"
                     + (f", {hours(plan, plan.total_branched, per_epoch, per_job):.3g} with" if plan.branching else ""))
    lines.append("nothing was launched")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m critical_periods.plan", description=__doc__.splitlines()[0],
                                     usage="%(prog)s -m sweep=NAME [overrides] [--time | --seconds-per-epoch S]")
    parser.add_argument("-m", "--multirun", action="store_true", help="accepted, as the multirun takes it")
    parser.add_argument("--time", action="store_true", help="time two epochs of the first job here")
    parser.add_argument("--seconds-per-epoch", type=float, help="a time per epoch measured elsewhere (e.g. on a GPU)")
    parser.add_argument("--seconds-per-job", type=float, default=0.0, help="start-up and test time per job")
    parser.add_argument("--jobs", action="store_true", help="list every job's epochs")
    args, overrides = parser.parse_known_args(argv)
    from critical_periods.config.validation import ConfigError
    from critical_periods.preflight import check_command

    try:
        check_command(overrides, multirun=True)  # every job's config, as the multirun will check it
        plan = plan_sweep(overrides)
    except (ConfigError, ValueError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except Exception as err:  # Hydra's composition errors (an unknown key or group option)
        if type(err).__module__.startswith(("hydra", "omegaconf")):
            print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
            return 2
        raise
    per_epoch, per_job = args.seconds_per_epoch, args.seconds_per_job
    if args.time:
        per_epoch, per_job = time_first_job(plan.jobs[0])
        print(f"timed here: {per_epoch:.3g} s per epoch, {per_job:.3g} s per job (start-up, data, test)")
    print(report(plan, per_epoch, per_job, args.jobs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
