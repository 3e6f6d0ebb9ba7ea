"""Hessian-vector products saved by starting Lanczos from the previous probe's top eigenvector.

    python benchmarks/warm_lanczos.py                  # MLP and Conv1DNet, 8 probes 50 SGD steps apart
    python benchmarks/warm_lanczos.py --probes 3 --steps 5 --n 64   # a quick check

Trains a model with SGD (batch 128, lr 0.05) on a fixed random 10-class data set and, every
``--steps`` steps, probes lambda_H^1 (tolerance 1e-3, the default) twice on the same weights: from
a random vector (the default) and warm-started from the previous probe's Ritz vector
(``HessianOptions(warm_start=True)``). Prints the products and times of both and the largest
relative difference of the two values (both stop at a relative residual of 1e-3).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from critical_periods.models.conv1d import Conv1DNet
from critical_periods.models.mlp import MLP
from critical_periods.probes import HessianOperator, lanczos

MODELS = {
    "mlp": lambda: MLP((1, 40), 10, widths=(512, 512, 512)),
    "conv1d": lambda: Conv1DNet((1, 40), 10, batch_norm=True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--probes", type=int, default=8)
    parser.add_argument("--steps", type=int, default=50, help="SGD steps between probes")
    parser.add_argument("--n", type=int, default=512, help="probe-set size")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{torch.get_num_threads()} torch thread(s); probe set {args.n}; {args.steps} SGD steps between probes\n")
    print("| model | probes | products, random start | products, warm start | saved | time random s "
          "| time warm s | max rel. diff |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.models:
        torch.manual_seed(0)
        model = MODELS[name]()
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(4096, 1, 40, generator=generator)
        y = (x.flatten(1)[:, :10].argmax(1) + torch.randint(0, 2, (4096,), generator=generator)) % 10
        probe_x, probe_y = x[: args.n], y[: args.n]
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        previous = None
        cold_products = warm_products = 0
        cold_time = warm_time = 0.0
        worst = 0.0
        for probe in range(args.probes):
            for step in range(args.steps):
                batch = torch.randint(0, len(x), (128,), generator=generator)
                model.train()
                loss = F.cross_entropy(model(x[batch]), y[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            model.eval()
            started = time.perf_counter()
            cold = lanczos(HessianOperator(model, probe_x, probe_y), generator=torch.Generator().manual_seed(probe))
            cold_s = time.perf_counter() - started
            started = time.perf_counter()
            warm = lanczos(HessianOperator(model, probe_x, probe_y), start=previous,
                           generator=torch.Generator().manual_seed(probe))
            warm_s = time.perf_counter() - started
            previous = warm.vectors
            if probe == 0:
                continue  # nothing to warm-start from yet: both started at random
            cold_time, warm_time = cold_time + cold_s, warm_time + warm_s
            cold_products += cold.iterations
            warm_products += warm.iterations
            worst = max(worst, abs(float(cold.values[0] - warm.values[0])) / abs(float(cold.values[0])))
        print(f"| {name} | {args.probes - 1} | {cold_products} | {warm_products} "
              f"| {100 * (1 - warm_products / cold_products):.0f}% | {cold_time:.1f} | {warm_time:.1f} | {worst:.1e} |",
              flush=True)


if __name__ == "__main__":
    main()
