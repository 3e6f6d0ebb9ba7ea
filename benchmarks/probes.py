"""Cost of each probe against a per-example Python loop, and against one training epoch.

    python benchmarks/probes.py --probe-size 512

On an MLP 40-512-512-512-10 and a small Conv1d net with BatchNorm (mnist1d inputs, float32, CPU),
times each probe as the callback runs it (``compute_probes``) and the per-example loop that computes
the same per-example statistic with one ``torch.autograd.grad`` per example; then one training epoch
(4000 examples, batch 128, SGD) of the same model, for the "probes add <= 50% to a default run"
check. Stiffness is timed with the per-example Gram matrix it is read from, and alone (from a given
Gram matrix). CKA vs the initial weights and the frequency errors are timed when
``critical_periods.probes`` has them (their per-run state, the initial kernels and the frequency
filter, is built before the clock starts, as the callback builds it once per run). Prints Markdown
tables; best of ``--repeats`` timings. Run it on a quiet machine (``uptime``).

    python benchmarks/probes.py --probe-size 32 --repeats 1    # a quick check that it runs
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from critical_periods.data.datamodule import stratified_pick
from critical_periods.models.conv1d import Conv1DNet
from critical_periods.models.mlp import MLP
from critical_periods.record.metric_names import PER_EXAMPLE_TRACE_K
from critical_periods.probes import (
    CovarianceOptions,
    FisherOptions,
    HessianOptions,
    StiffnessOptions,
    collect_probe_gradients,
    compute_probes,
    per_example_covariance_metrics,
    stiffness_from_gram,
)

TRAIN_EXAMPLES, BATCH_SIZE = 4000, 128


def load_data() -> tuple[Tensor, Tensor, int]:
    """mnist1d training inputs (N, 1, 40), normalised, and labels; random inputs if it is unavailable."""
    try:
        from critical_periods.data.mnist1d import load_mnist1d

        arrays = load_mnist1d()
        x, y, classes = arrays.x_train[:TRAIN_EXAMPLES], arrays.y_train[:TRAIN_EXAMPLES], arrays.num_classes
    except ImportError:
        x = torch.randn(TRAIN_EXAMPLES, 1, 40, generator=torch.Generator().manual_seed(0))
        y, classes = torch.arange(TRAIN_EXAMPLES) % 10, 10
    return (x - x.mean()) / x.std(), y, classes


def best_ms(work: Callable[[], object], repeats: int) -> float:
    work()  # warm-up: allocator, lazy imports
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return 1000 * min(times)


def loop_per_example_gradients(model: nn.Module, x: Tensor, labels: Tensor) -> Tensor:
    """(N, P): the brute-force reference, one autograd.grad per example."""
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for i in range(len(x)):
        loss = F.cross_entropy(model(x[i : i + 1]), labels[i : i + 1])
        rows.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)]))
    return torch.stack(rows)


def loop_fisher_sampled(model: nn.Module, x: Tensor, generator: torch.Generator) -> float:
    with torch.no_grad():
        labels = torch.multinomial(model(x).softmax(1), 1, generator=generator).squeeze(1)
    return float(loop_per_example_gradients(model, x, labels).square().sum(1).mean())


def loop_trace_k(model: nn.Module, x: Tensor, y: Tensor) -> float:
    g = loop_per_example_gradients(model, x, y).double()
    gram = g @ g.T  # what the covariance probe needs: tr K and the spectrum from the N x N Gram matrix
    return float(gram.diagonal().mean() - g.mean(0).square().sum())


def representation_rows(model: nn.Module, x: Tensor, y: Tensor, args) -> list[tuple[str, Callable[[], object]]]:
    """(name, work) of CKA vs init and of the frequency errors, or none if this checkout lacks them."""
    try:
        from critical_periods.probes.cka import centred_gram
        from critical_periods.probes.frequency import probe_filter
        from critical_periods.probes.representation_probes import RepresentationOptions, representation_metrics
        from critical_periods.probes.representations import layer_representations
    except ImportError:
        return []
    initial = {k: centred_gram(v.float()) for k, v in layer_representations(model, x, args.chunk_size).items()}
    low_pass = probe_filter(x)
    cka, frequency = RepresentationOptions(frequency=False), RepresentationOptions(cka=False)
    return [
        ("CKA vs init, every layer (debiased, from the initial kernels)",
         lambda: representation_metrics(model, x, y, cka, initial, args.chunk_size)),
        ("Frequency errors (low/high, from the filter matrix)",
         lambda: representation_metrics(model, x, y, frequency, None, args.chunk_size, low_pass)),
    ]


def train_epoch(model: nn.Module, x: Tensor, y: Tensor) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    model.train()
    for start in range(0, len(x), BATCH_SIZE):
        index = order[start : start + BATCH_SIZE]
        loss = F.cross_entropy(model(x[index]), y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def benchmark(name: str, make_model: Callable[[], nn.Module], x: Tensor, y: Tensor, classes: int, args) -> None:
    torch.manual_seed(0)
    model = make_model().eval()
    index = stratified_pick(y, args.probe_size, seed=0)
    px, py = x[index], y[index]
    parameters = sum(p.numel() for p in model.parameters())
    generator = torch.Generator().manual_seed(0)

    def probe(**options) -> Callable[[], object]:
        return lambda: compute_probes(model, px, py, chunk_size=args.chunk_size, generator=generator, **options)

    covariance = CovarianceOptions()  # the default: 25 mini-batches of 128 training examples
    batches = (x[: covariance.batches * covariance.batch_size], y[: covariance.batches * covariance.batch_size])

    loop_ms = best_ms(lambda: loop_fisher_sampled(model, px, generator), max(1, args.repeats // 2))
    rows = [  # (probe, time ms, time of the loop computing the same statistic, or None)
        ("Fisher trace, sampled (m=1)", best_ms(probe(fisher=FisherOptions(samples=1)), args.repeats), loop_ms),
        ("Fisher trace, exact (C classes)", best_ms(probe(fisher=FisherOptions(exact=True)), args.repeats),
         classes * loop_ms),
        ("Per-example Gram matrix + stiffness (probes/full)", best_ms(probe(stiffness=StiffnessOptions()),
         args.repeats), loop_ms),
        ("K from 25 mini-batch gradients of 128 (lambda_K, tr K, cond)",
         best_ms(probe(covariance=covariance, covariance_batches=batches), args.repeats), None),
        ("Hessian lambda_H^1 (Lanczos, tol 1e-3)",
         best_ms(probe(hessian=HessianOptions(top_k=1, trace_samples=0)), args.repeats), None),
        ("Hessian trace (Hutchinson, 10 HVPs)",
         best_ms(probe(hessian=HessianOptions(top_k=0, trace_samples=10)), args.repeats), None),
    ]
    in_full = len(rows) - 1  # rows[1:] are probes/full: exact Fisher + Gram/stiffness + K + lambda_H^1 + tr H
    gram = collect_probe_gradients(model, px, py, gram=True, chunk_size=args.chunk_size).gram
    rows.append(("Stiffness alone, from the Gram matrix (N x N)",
                 best_ms(lambda: stiffness_from_gram(gram, py, classes), args.repeats), None))
    rows += [(row, best_ms(work, args.repeats), None) for row, work in representation_rows(model, px, py, args)]
    epoch_ms = best_ms(lambda: train_epoch(make_model(), x, y), args.repeats)

    # the probe and the loop agree (same statistic, same true labels)
    probed = per_example_covariance_metrics(gram)[PER_EXAMPLE_TRACE_K]
    looped = loop_trace_k(model, px, y=py)

    print(f"\n### {name}: {parameters:,} parameters, probe set {args.probe_size}, float32, "
          f"{torch.get_num_threads()} threads\n")
    print("| probe | time ms | per-example loop ms | speed-up vs loop |")
    print("|---|---:|---:|---:|")
    for probe_name, ms, loop in rows:
        if loop is None:  # not a per-example statistic: no loop to compare with
            print(f"| {probe_name} | {ms:.1f} | - | - |")
        else:
            print(f"| {probe_name} | {ms:.1f} | {loop:.0f} | {loop / ms:.0f}x |")
    print(f"| one training epoch ({TRAIN_EXAMPLES} examples, batch {BATCH_SIZE}, SGD) | {epoch_ms:.0f} | | |")
    default_ms = rows[0][1]
    everything_ms = sum(ms for _, ms, _ in rows[1 : 1 + in_full])
    print(f"\nprobes/fisher (default) adds {100 * default_ms / epoch_ms:.0f}% per epoch; "
          f"probes/full adds {100 * everything_ms / epoch_ms:.0f}%. "
          f"tr K probe vs loop: relative difference {abs(probed - looped) / abs(looped):.1e}. "
          "The exact-Fisher loop is C x the measured loop (C backward passes per example), not run.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probe-size", type=int, default=512)
    parser.add_argument("--chunk-size", type=int, default=None, help="default: the whole probe set at once")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    x, y, classes = load_data()
    input_shape = tuple(x.shape[1:])
    benchmark("MLP 40-512-512-512-10", lambda: MLP(input_shape, classes, widths=(512, 512, 512)),
              x, y, classes, args)
    benchmark("Conv1DNet (3 x Conv1d 32 ch, k 5, BatchNorm)",
              lambda: Conv1DNet(input_shape, classes, batch_norm=True), x, y, classes, args)


if __name__ == "__main__":
    main()
