"""A sweep with and without exact checkpoint branching, back to back on one machine.

    python benchmarks/branching.py [--sweep removal] [--overrides seed=0 logger=none]

Runs ``critical-periods-train -m sweep=NAME OVERRIDES`` in fresh sweep folders, with ``branching=false``
and then with the default (branching on), ``--repeats`` times alternated, and prints for each the epochs trained
(summed from the jobs' records: a branched job trains its epochs after its branch point), the median wall
time of the whole multirun, and the ratios. It checks that both sweeps recorded the same final numbers,
bit for bit. Run it with nothing else running (check ``uptime``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_sweep(sweep: str, overrides: list[str], sweep_dir: Path) -> tuple[float, dict[str, dict]]:
    """Wall seconds of the multirun and each job's summary, by folder name."""
    command = [sys.executable, "-m", "critical_periods.train", "-m", f"sweep={sweep}", *overrides,
               f"hydra.sweep.dir={sweep_dir}"]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return wall, {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("*/summary.json")}


def trained_epochs(summaries: dict[str, dict]) -> int:
    return sum(s["epochs"] - (s.get("branched_from_epoch") or 0) for s in summaries.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="removal")
    parser.add_argument("--overrides", nargs="*", default=["seed=0", "logger=none"])
    parser.add_argument("--repeats", type=int, default=2, help="pairs (not branched, branched), alternated; medians")
    args = parser.parse_args()
    print(f"load before: {os.getloadavg()[0]:.2f} (1-min average); {os.cpu_count()} cores")
    plain_walls, branched_walls = [], []
    with tempfile.TemporaryDirectory() as root:
        for repeat in range(args.repeats):
            wall, plain = run_sweep(args.sweep, [*args.overrides, "branching=false"], Path(root) / f"plain{repeat}")
            plain_walls.append(wall)
            wall, branched = run_sweep(args.sweep, args.overrides, Path(root) / f"branched{repeat}")
            branched_walls.append(wall)
            print(f"round {repeat + 1}: {plain_walls[-1]:.1f} s not branched, {branched_walls[-1]:.1f} s branched", flush=True)
    finals = lambda runs: {k: {m: v for m, v in s.items() if m.startswith("final/")} for k, s in runs.items()}  # noqa: E731
    same = finals(plain) == finals(branched)
    plain_epochs, branched_epochs = trained_epochs(plain), trained_epochs(branched)
    plain_wall, branched_wall = statistics.median(plain_walls), statistics.median(branched_walls)
    print(f"sweep={args.sweep} {' '.join(args.overrides)}: {len(plain)} jobs; medians of {args.repeats} rounds")
    print(f"{'':12} {'epochs trained':>15} {'wall s':>8}")
    print(f"{'not branched':12} {plain_epochs:15d} {plain_wall:8.1f}")
    print(f"{'branched':12} {branched_epochs:15d} {branched_wall:8.1f}")
    print(f"{'ratio':12} {plain_epochs / branched_epochs:14.2f}x {plain_wall / branched_wall:7.2f}x")
    print(f"final numbers bitwise equal: {same}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
