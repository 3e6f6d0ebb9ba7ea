"""What each probe group adds to a training epoch, at its default schedule, on the default models.

    python benchmarks/probe_overhead.py --epochs 10                # MLP and Conv1DNet, every group
    python benchmarks/probe_overhead.py --epochs 4 --train-examples 50000   # a CIFAR-10-sized epoch
    python benchmarks/probe_overhead.py --models mlp --groups fisher --epochs 4 --repeats 1   # seconds

Each run trains ``--epochs`` epochs (no deficit, no W&B) with one ``probes=<group>`` as that group's
config sets it (probe size, ``every_n_epochs``, early steps), and is timed by its ``fit_seconds``.
Runs alternate between the groups over the repeats; the best of each is kept. Two overheads:

* this run's: the group's fit time over that of ``probes=none``, minus one. Early-step probes
  (break_even: ~30 in the first 1000 steps) all fall into a short run, so this overstates a long run;
* per epoch, in the steady state: the median time of one probe (from the record's
  ``probe/seconds``) over ``every_n_epochs`` epochs of ``probes=none``. The early-step probes add
  their count times that once per run, whatever its length.

A probe costs the same whatever the training set's size (probe size 512, K from 25 batches of 128),
while an epoch grows with it: ``--train-examples`` regenerates mnist1d with about that many training
examples (CIFAR-10 has 50,000) to show the share on a paper-sized epoch. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hydra import compose, initialize_config_dir

from critical_periods.record.metrics import read_metrics
from critical_periods.threads import default_threads, set_threads
from critical_periods.train import train

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
GROUPS = ["none", "fisher", "representation", "break_even", "full"]
MNIST1D_TRAIN_SHARE = 0.8 * 0.9  # mnist1d's train split, less the 10% validation the data config takes


@dataclass
class Run:
    fit_seconds: float
    probe_seconds: list[float]  # one per probe call, from the record
    every_n_epochs: int


def timed_run(model: str, group: str, epochs: int, out: Path, threads: int, train_examples: int | None) -> Run:
    overrides = ["deficit=none", "logger=none", f"probes={group}", f"model={model}", "schedule.mode=fixed",
                 f"schedule.epochs={epochs}", f"threads={threads}", "trainer.enable_progress_bar=false",
                 "checkpoint.every_n_epochs=0", f"paths.output_dir={out}"]
    if train_examples:
        samples = 10 * math.ceil(train_examples / MNIST1D_TRAIN_SHARE / 10)
        overrides.append(f"data.source.num_samples={samples}")
    if group in ("representation", "full"):
        overrides.append("probes.representation.save_every_n_epochs=0")  # disk writes are not the probe
    cfg = compose("train", overrides=overrides)
    summary = train(cfg)
    seconds = [row["probe/seconds"] for row in read_metrics(out) if "probe/seconds" in row]
    return Run(summary.fit_seconds, seconds, int(cfg.probes.get("every_n_epochs", 1) or 0) if group != "none" else 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mlp", "conv1d"])
    parser.add_argument("--groups", nargs="+", default=GROUPS[1:], choices=GROUPS[1:])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--train-examples", type=int, default=None,
                        help="about this many mnist1d training examples (default: the data config's 3,600)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the project's choice)")
    args = parser.parse_args()
    threads = args.threads or default_threads()
    set_threads(threads)
    print(f"{args.epochs} epochs, {threads} torch thread(s); best of {args.repeats}\n")
    print("| model | probes | fit s | this run's overhead | probe calls | median s per probe "
          "| per epoch, steady state |")
    print("|---|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp, initialize_config_dir(CONF_DIR, version_base="1.3"):
        for model in args.models:
            best: dict[str, Run] = {}
            for repeat in range(args.repeats):
                order = ["none", *args.groups]
                for group in order if repeat % 2 == 0 else reversed(order):
                    run = timed_run(model, group, args.epochs, Path(tmp) / f"{model}-{group}-{repeat}", threads,
                                    args.train_examples)
                    if group not in best or run.fit_seconds < best[group].fit_seconds:
                        best[group] = run
            epoch_seconds = best["none"].fit_seconds / args.epochs
            for group in ["none", *args.groups]:
                run = best[group]
                if group == "none":
                    print(f"| {model} | none | {run.fit_seconds:.2f} | - | - | - | - (epoch {epoch_seconds:.2f} s) |")
                    continue
                per_probe = statistics.median(run.probe_seconds)
                steady = per_probe / run.every_n_epochs / epoch_seconds if run.every_n_epochs else 0.0
                print(f"| {model} | {group} | {run.fit_seconds:.2f} | {100 * (run.fit_seconds / best['none'].fit_seconds - 1):.0f}% "
                      f"| {len(run.probe_seconds)} | {per_probe:.3f} | {100 * steady:.0f}% |", flush=True)


if __name__ == "__main__":
    main()
