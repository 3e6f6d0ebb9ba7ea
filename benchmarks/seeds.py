"""Seeds in one process: the wall and CPU time of S seeds trained as one vectorised group
(``hydra/launcher=seeds``) against the same S jobs under Hydra's basic launcher (one after another
in one process), for several models, with probes off and with ``probes=fisher``.

    python benchmarks/seeds.py                                   # the full grid (long)
    python benchmarks/seeds.py --models w64 --probes fisher --seeds 1 8 --epochs 60

Each cell is one real multirun in a fresh process (``logger=none``, ``trainer=cpu``, one torch
thread), timed from outside: wall time, and CPU time from ``getrusage(RUSAGE_CHILDREN)``. Start-up
(interpreter, imports, config composition, generating the data, building the trainer) is measured
per model as the CPU time of a ``debug=default`` run (two batches per stage) and subtracted from both
sides of the ratio, as both pay it once.
Peak memory (max RSS of the process) is printed too: it grows with the group size. Run it on an idle
machine (check ``uptime``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = {
    "mlp": ["model=mlp"],                       # the default MLP, 551k parameters
    "w64": ["model=mlp", "model.widths=[64,64]"],
    "conv1d": ["model=conv1d"],                 # 12k parameters
}
PROBES = {"none": ["probes=none"], "fisher": ["probes=fisher"]}


def timed(args: list[str], cwd: Path) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MB) of ``python -m critical_periods.train ARGS``, from that process's
    own resource usage (``wait4``)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    with tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "critical_periods.train", *args], cwd=cwd, env=env,
                                   stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(args)} failed:\n{err.read()[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--probes", nargs="+", default=list(PROBES), choices=list(PROBES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 4, 8, 16])
    parser.add_argument("--epochs", type=int, default=60)
    args = parser.parse_args()

    common = ["logger=none", "trainer=cpu", "trainer.enable_progress_bar=false", "threads=1",
              "schedule.mode=fixed", f"schedule.epochs={args.epochs}", f"deficit.length={min(20, args.epochs // 3)}"]
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        print("| model | probes | S | basic wall s | basic CPU s | group wall s | group CPU s | CPU ratio (less start-up) | group peak RSS MB |")
        print("|---|---|---|---|---|---|---|---|---|")
        for model in args.models:
            startup = timed([*common, *MODELS[model], "debug=default", "probes=none", f"hydra.run.dir={root}/debug-{model}"], root)[1]
            print(f"{model}: start-up CPU time (subtracted) {startup:.2f} s", flush=True)
            for probes in args.probes:
                for seeds in args.seeds:
                    grid = [*common, *MODELS[model], *PROBES[probes], "seed=" + ",".join(map(str, range(seeds)))]
                    cell = root / f"{model}-{probes}-{seeds}"
                    basic = timed(["-m", *grid, f"hydra.sweep.dir={cell}/basic"], root)
                    group = timed(["-m", *grid, f"hydra.sweep.dir={cell}/group", "hydra/launcher=seeds"], root)
                    ratio = (group[1] - startup) / (basic[1] - startup)
                    print(f"| {model} | {probes} | {seeds} | {basic[0]:.1f} | {basic[1]:.1f} | {group[0]:.1f} | "
                          f"{group[1]:.1f} | {ratio:.2f} | {group[2]:.0f} |", flush=True)


if __name__ == "__main__":
    main()
