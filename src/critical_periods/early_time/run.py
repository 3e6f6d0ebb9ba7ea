"""A grid of early-time runs into one folder: ``python -m critical_periods.early_time.run --out DIR``.

One JSON file per run (``d<d>_seed<s>.json``, the output of :func:`gd.run_early`); runs already on disk
are skipped, so an interrupted grid continues. Bad arguments: a one-line error, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from critical_periods.config.validation import ConfigError, not_allowed
from critical_periods.early_time.gd import EarlyRunConfig, run_early

# The study of docs/rules.yaml (hu-early-linear-*): judged seeds at three dimensions, fresh seeds at d = 50.
DIMS = (20, 50, 100)
SEEDS = (0, 1, 2, 3, 4)
CONTROL_SEEDS = (100, 101, 102, 103, 104)
CONTROL_DIM = 50


def run_file(out: Path, dim: int, seed: int) -> Path:
    return out / f"d{dim}_seed{seed}.json"


def whole_numbers(key: str, text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise not_allowed(key, text, "a comma-separated list of whole numbers") from None
    if not values or min(values) < 0:
        raise not_allowed(key, text, "a non-empty comma-separated list of whole numbers >= 0")
    return values


def grid(dims: tuple[int, ...], seeds: tuple[int, ...], control_seeds: tuple[int, ...], control_dim: int):
    return [(d, s) for d in dims for s in seeds] + [(control_dim, s) for s in control_seeds]


def run_grid(out: Path, jobs: list[tuple[int, int]], **settings) -> float:
    """Runs the missing jobs; returns the wall time in seconds."""
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for dim, seed in jobs:
        path = run_file(out, dim, seed)
        if path.exists():
            continue
        result = run_early(EarlyRunConfig(input_dim=dim, seed=seed, **settings))
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result))
        tmp.replace(path)  # a half-written file never counts as done
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dims", default=",".join(map(str, DIMS)))
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    parser.add_argument("--control-seeds", default=",".join(map(str, CONTROL_SEEDS)))
    parser.add_argument("--control-dim", type=int, default=CONTROL_DIM)
    parser.add_argument("--steps", type=int, default=EarlyRunConfig.steps)
    parser.add_argument("--width", type=int, default=EarlyRunConfig.width)
    parser.add_argument("--num-samples", type=int, default=EarlyRunConfig.num_samples)
    parser.add_argument("--lr-per-dim", type=float, default=EarlyRunConfig.lr_per_dim)
    args = parser.parse_args(argv)
    try:
        dims = whole_numbers("dims", args.dims)
        if min(dims) < 1:
            raise not_allowed("dims", args.dims, "whole numbers >= 1")
        jobs = grid(dims, whole_numbers("seeds", args.seeds),
                    whole_numbers("control_seeds", args.control_seeds) if args.control_seeds else (), args.control_dim)
        settings = {"steps": args.steps, "width": args.width, "num_samples": args.num_samples, "lr_per_dim": args.lr_per_dim}
        EarlyRunConfig(**settings).check()  # refuse before any run starts
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    elapsed = run_grid(args.out, jobs, **settings)
    print(f"{len(jobs)} runs in {args.out} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
