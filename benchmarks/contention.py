"""Training speed on a shared CPU: each thread setting idle and beside one busy competitor process.

    python benchmarks/contention.py [--epochs 10] [--models mlp conv1d]

For every model and setting, a real run (`python -m critical_periods.train`, no W&B, default probes)
is timed by its own ``fit_seconds``, first on the idle machine, then with a competitor (a pure-Python
busy loop, one core's worth of work) that this script starts and stops by process id. Settings:

* the default (``threads: null``: one core fewer than torch's default, so 1 on a 2-core machine);
* ``threads=1``;
* ``threads=2`` with the OpenMP default wait policy (torch's default on a 2-core machine: the
  intra-op pool spins while it waits for a core that is taken);
* ``threads=2`` with ``OMP_WAIT_POLICY=PASSIVE`` (waiting threads sleep; must be set before torch loads);
* ``threads=2`` with ``GOMP_SPINCOUNT=1000`` (waiting threads spin briefly, then sleep).

Idle and busy rounds alternate ``--repeats`` times; prints the median milliseconds per epoch and the
slowdown ratio (busy / idle) per setting, and each setting against
``threads=2`` idle (torch's own default here). Run it with nothing else running (check ``uptime``).
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

SETTINGS = {
    "threads=null (the default)": ({}, {}),
    "threads=1": ({"threads": "1"}, {}),
    "threads=2": ({"threads": "2"}, {}),
    "threads=2, OMP_WAIT_POLICY=PASSIVE": ({"threads": "2"}, {"OMP_WAIT_POLICY": "PASSIVE"}),
    # libgomp (torch's OpenMP on Linux) spins GOMP_SPINCOUNT times before it sleeps (default 300000).
    "threads=2, GOMP_SPINCOUNT=1000": ({"threads": "2"}, {"GOMP_SPINCOUNT": "1000"}),
}


def timed_run(model: str, epochs: int, overrides: dict[str, str], env_extra: dict[str, str]) -> float:
    """Seconds per epoch of one real run (its recorded fit time over its epochs)."""
    with tempfile.TemporaryDirectory() as out:
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
        env.update(env_extra)
        command = [
            sys.executable, "-m", "critical_periods.train", f"model={model}", "logger=none",
            "deficit.length=5", f"schedule.epochs_after_deficit={epochs - 5}", "trainer.enable_progress_bar=false",
            f"hydra.run.dir={out}", *(f"{k}={v}" for k, v in overrides.items()),
        ]
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
        summary = json.loads((Path(out) / "summary.json").read_text())
        return summary["fit_seconds"] / epochs


class Competitor:
    """A busy process (one core), started and stopped by pid."""

    def __enter__(self) -> "Competitor":
        self.process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
        return self

    def __exit__(self, *exc) -> None:
        self.process.kill()
        self.process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="epochs per run (5 blurred, the rest clean; at least 6)")
    parser.add_argument("--models", nargs="+", default=["mlp", "conv1d"])
    parser.add_argument("--repeats", type=int, default=3,
                        help="idle and busy rounds, alternated (the medians are printed: a VM's speed drifts)")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    args = parser.parse_args()
    print(f"load before: {os.getloadavg()[0]:.2f} (1-min average); {os.cpu_count()} cores")
    print(f"{'model':8} {'setting':40} {'idle ms/ep':>10} {'busy ms/ep':>10} {'busy/idle':>9} {'idle vs 2 threads':>17}")
    for model in args.models:
        timed_run(model, args.epochs, {"threads": "1"}, {})  # warm the caches outside the timings
        idle = {name: [] for name in args.settings}
        busy = {name: [] for name in args.settings}
        for _ in range(args.repeats):
            for name in args.settings:
                idle[name].append(timed_run(model, args.epochs, *SETTINGS[name]))
            with Competitor():
                for name in args.settings:
                    busy[name].append(timed_run(model, args.epochs, *SETTINGS[name]))
        idle_ms = {name: 1000 * statistics.median(v) for name, v in idle.items()}
        busy_ms = {name: 1000 * statistics.median(v) for name, v in busy.items()}
        reference = idle_ms.get("threads=2")
        for name in args.settings:
            versus = f"{idle_ms[name] / reference:16.2f}x" if reference else ""
            print(f"{model:8} {name:40} {idle_ms[name]:10.0f} {busy_ms[name]:10.0f} "
                  f"{busy_ms[name] / idle_ms[name]:8.1f}x {versus}", flush=True)


if __name__ == "__main__":
    main()
