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

from critical_periods.train import build_datamodule, train

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
        for i in range(0, len(x), batch):
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2, help="alternate the two sides this many times; best of each")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, initialize_config_dir(CONF_DIR, version_base="1.3"):
        overrides = [
            "deficit=none", "logger=none", "probes=none", "schedule.mode=fixed",
            f"schedule.epochs={args.epochs}", f"paths.output_dir={tmp}", "trainer.enable_progress_bar=false",
        ]
        cfg = compose("train", overrides=overrides)
        build_datamodule(cfg)  # generate (and cache) the data before either side is timed
        plain, lightning = [], []
        for _ in range(args.repeats):
            plain.append(plain_loop(cfg, args.epochs))
            lightning.append(train(cfg)["fit_seconds"])
    p, lt = min(plain), min(lightning)
    print(f"model={cfg.model._target_.rsplit('.', 1)[-1]} data=mnist1d batch={cfg.data.batch_size} epochs={args.epochs}")
    print(f"plain loop : {p:.2f} s  ({1000 * p / args.epochs:.0f} ms/epoch)")
    print(f"Trainer    : {lt:.2f} s  ({1000 * lt / args.epochs:.0f} ms/epoch)")
    print(f"ratio      : {lt / p:.2f}x")


if __name__ == "__main__":
    main()
