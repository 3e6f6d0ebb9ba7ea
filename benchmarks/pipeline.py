"""Overhead of the project's Trainer over a plain PyTorch loop, on the default model and data.

    python benchmarks/pipeline.py --epochs 20

Both sides train the same model (same initial weights), on the same normalised tensors, with the
same optimiser, lr schedule, batch size and per-epoch validation; the Trainer side goes through
``critical_periods.train.train`` (no deficit, no probes, no W&B) and is timed by its ``fit_seconds``.
Prints both wall times and their ratio. Run it on a quiet machine (check ``uptime``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from critical_periods.build import build_datamodule
from critical_periods.threads import default_threads, set_threads
from critical_periods.train import train

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def plain_loop(cfg, epochs: int) -> float:
    """Seconds to train ``epochs`` epochs with a hand-written loop (no Lightning)."""
    import hydra

    torch.manual_seed(cfg.seed)
    datamodule = build_datamodule(cfg)
    model = hydra.utils.instantiate(cfg.model)(input_shape=datamodule.input_shape, num_classes=datamodule.num_classes)
    optimizer = hydra.utils.instantiate(cfg.optim)(model.parameters())
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, cfg.schedule.lr_gamma)
    x, y, batch = datamodule.x_train, datamodule.y_train, datamodule.batch_size
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x))
        for i in range(0, len(x) - batch + 1, batch):  # the Trainer drops the remainder batch too
            index = order[i : i + batch]
            loss = F.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        scheduler.step()
        model.eval()
        with torch.no_grad():
            (model(datamodule.x_val).argmax(1) == datamodule.y_val).float().mean().item()
    return time.perf_counter() - start


def profile_trainer(cfg, epochs: int) -> None:
    """Profile one Trainer run and print where its wall time goes: self time (not counting callees)
    in Lightning's and torchmetrics' Python code, in this project's, and in torch's Python code and
    its C++ calls (cProfile counts a builtin call as its caller's callee, so kernels land in "torch")."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    fit = train(cfg).fit_seconds
    profiler.disable()
    groups = {"lightning + torchmetrics": ("pytorch_lightning", "lightning_fabric", "lightning_utilities", "torchmetrics"),
              "critical_periods": ("critical_periods",), "torch": ("torch",)}
    totals = dict.fromkeys([*groups, "other"], 0.0)
    for (filename, _, name), (_, _, self_time, _, _) in pstats.Stats(profiler).stats.items():
        where = filename if filename != "~" else name  # builtins: "<method 'run_backward' of ...>"
        group = next((g for g, keys in groups.items() if any(k in where for k in keys)), "other")
        totals[group] += self_time
    whole = sum(totals.values())
    print(f"profiled Trainer run: fit {fit:.2f} s for {epochs} epochs; self time by code ({whole:.2f} s profiled):")
    for group, seconds in totals.items():
        print(f"  {group:26} {seconds:6.2f} s  {100 * seconds / whole:5.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2, help="alternate the two sides this many times; best of each")
    parser.add_argument("--profile", action="store_true",
                        help="also profile one Trainer run: the self time of Lightning's own Python code")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for both sides (default: the project's threads=null choice)")
    args = parser.parse_args()
    threads = args.threads if args.threads is not None else default_threads()
    set_threads(threads)  # the same for both sides: train() sets it again from the config

    with tempfile.TemporaryDirectory() as tmp, initialize_config_dir(CONF_DIR, version_base="1.3"):
        overrides = [
            "deficit=none", "logger=none", "probes=none", "schedule.mode=fixed", f"threads={threads or 'null'}",
            f"schedule.epochs={args.epochs}", "trainer.enable_progress_bar=false",
        ]
        build_datamodule(compose("train", overrides=[*overrides, f"paths.output_dir={tmp}"]))  # generate the data first
        plain, lightning = [], []
        for repeat in range(args.repeats):
            cfg = compose("train", overrides=[*overrides, f"paths.output_dir={tmp}/{repeat}"])  # a fresh run each time
            plain.append(plain_loop(cfg, args.epochs))
            lightning.append(train(cfg).fit_seconds)
        if args.profile:
            profile_trainer(compose("train", overrides=[*overrides, f"paths.output_dir={tmp}/profiled"]), args.epochs)
    p, lt = min(plain), min(lightning)
    print(f"model={cfg.model._target_.rsplit('.', 1)[-1]} data=mnist1d batch={cfg.data.batch_size} epochs={args.epochs} "
          f"threads={torch.get_num_threads()}")
    print(f"plain loop : {p:.2f} s  ({1000 * p / args.epochs:.0f} ms/epoch)")
    print(f"Trainer    : {lt:.2f} s  ({1000 * lt / args.epochs:.0f} ms/epoch)")
    print(f"ratio      : {lt / p:.2f}x")


if __name__ == "__main__":
    main()
