"""What each probe group adds to a training epoch, at its default schedule, on the default models.

    python benchmarks/probe_overhead.py --epochs 10                # MLP and Conv1DNet, every group
    python benchmarks/probe_overhead.py --models mlp --groups fisher --epochs 4 --repeats 1   # seconds

Each run trains ``--epochs`` epochs (no deficit, no W&B) with one ``probes=<group>`` as that group's
config sets it (probe size, ``every_n_epochs``, early steps), and is timed by its ``fit_seconds``;
the overhead of a group is its fit time over that of ``probes=none`` minus one, per epoch trained.
Runs alternate between the groups over the repeats; the best of each is kept. Early-step probes
(break_even: ~30 in the first 1000 steps) fall into the first epochs, so a short run overstates
their share of a long one: the probe time per epoch is also printed. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir

from critical_periods.record.metrics import read_metrics
from critical_periods.threads import default_threads, set_threads
from critical_periods.train import train

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
GROUPS = ["none", "fisher", "representation", "break_even", "full"]


def timed_run(model: str, group: str, epochs: int, out: Path, threads: int) -> tuple[float, float]:
    """(fit seconds, probe seconds summed from the record) of one run."""
    overrides = ["deficit=none", "logger=none", f"probes={group}", f"model={model}", "schedule.mode=fixed",
                 f"schedule.epochs={epochs}", f"threads={threads}", "trainer.enable_progress_bar=false",
                 "checkpoint.every_n_epochs=0", f"paths.output_dir={out}"]
    if group in ("representation", "full"):
        overrides.append("probes.representation.save_every_n_epochs=0")  # disk writes are not the probe
    summary = train(compose("train", overrides=overrides))
    probe_seconds = sum(row.get("probe/seconds", 0.0) for row in read_metrics(out))
    return summary.fit_seconds, probe_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mlp", "conv1d"])
    parser.add_argument("--groups", nargs="+", default=GROUPS[1:], choices=GROUPS[1:])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the project's choice)")
    args = parser.parse_args()
    threads = args.threads or default_threads()
    set_threads(threads)
    print(f"{args.epochs} epochs, {threads} torch thread(s); best of {args.repeats}\n")
    print("| model | probes | fit s | overhead vs probes=none | probe s per epoch |")
    print("|---|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp, initialize_config_dir(CONF_DIR, version_base="1.3"):
        for model in args.models:
            best: dict[str, tuple[float, float]] = {}
            for repeat in range(args.repeats):
                order = ["none", *args.groups]
                for group in order if repeat % 2 == 0 else reversed(order):
                    fit, probes = timed_run(model, group, args.epochs, Path(tmp) / f"{model}-{group}-{repeat}", threads)
                    if group not in best or fit < best[group][0]:
                        best[group] = (fit, probes)
            base = best["none"][0]
            for group in ["none", *args.groups]:
                fit, probes = best[group]
                overhead = "-" if group == "none" else f"{100 * (fit / base - 1):.0f}%"
                print(f"| {model} | {group} | {fit:.2f} | {overhead} | {probes / args.epochs:.3f} |", flush=True)


if __name__ == "__main__":
    main()
