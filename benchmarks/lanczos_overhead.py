"""What Lanczos costs beside its Hessian-vector products: orthogonalisation, Ritz values, restarts.

    python benchmarks/lanczos_overhead.py                     # n = 550,000 (the 512-wide MLP), 22 steps
    python benchmarks/lanczos_overhead.py --n 11000000 --repeats 3   # ResNet-18's parameter count

The operator is diagonal (``d * v``: a product that costs one pass over v), so the time per step is the
solver's own work on vectors of length n: the per-step cost added to every Hessian-vector product of
a lambda_H^1 probe. Each repeat runs ``--starts`` random starts for exactly ``--steps`` steps
(tolerance 0: no early stop; a restart at the default basis of 20 vectors when the steps pass it) and
the median repeat is printed. Compare two versions of the code by running it at each (one torch
thread, a quiet machine).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

from critical_periods.probes.curvature import lanczos
from critical_periods.threads import set_threads


class Diagonal:
    """``v -> d * v``, float32, with the shape/dtype/device that :func:`lanczos` reads."""

    def __init__(self, n: int) -> None:
        self.diagonal = torch.linspace(0.0, 1.0, n)
        self.shape, self.dtype, self.device = (n, n), self.diagonal.dtype, self.diagonal.device

    def __matmul__(self, v: torch.Tensor) -> torch.Tensor:
        return self.diagonal * v


def seconds_per_step(operator: Diagonal, steps: int, starts: int) -> float:
    began = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "did not converge": tolerance 0 never does, on purpose
        for seed in range(starts):
            lanczos(operator, 1, 0.0, steps, torch.Generator().manual_seed(seed))
    return (time.perf_counter() - began) / (steps * starts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=550_000, help="vector length (parameters)")
    parser.add_argument("--steps", type=int, default=22, help="Lanczos steps per start (the MLP's ~22-26 at 1e-3)")
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    set_threads(1)
    operator = Diagonal(args.n)
    seconds_per_step(operator, args.steps, 1)  # warm-up
    times = [seconds_per_step(operator, args.steps, args.starts) for _ in range(args.repeats)]
    print(f"n = {args.n:,}, {args.steps} steps x {args.starts} starts, {args.repeats} repeats, one torch thread: "
          f"{1000 * statistics.median(times):.2f} ms per step (median; range "
          f"{1000 * min(times):.2f}-{1000 * max(times):.2f})")


if __name__ == "__main__":
    main()
