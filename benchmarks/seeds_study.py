"""The reproduction's launcher on one study: the same multiruns with ``hydra/launcher=seeds`` (what
``reproduce`` uses) and with Hydra's basic launcher, timed from outside, and their records compared
(job folder names, the (step, epoch, key) rows of every ``metrics.jsonl``, summary keys).

    python benchmarks/seeds_study.py                 # the depth study, cut grid (below)
    python benchmarks/seeds_study.py --epochs 10 --after 10
    python benchmarks/seeds_study.py --study sensitivity_conv1d --epochs 10 --after 10

The cut grids: the depth study's first command (both depths, blur and no deficit, seeds 0-4), or a
sensitivity study's first (blur windows at onsets 0 and ``--epochs``, seeds 0-4), with shorter training; one torch thread, ``logger=none``. Run it on an idle machine (check ``uptime``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from critical_periods.record.metrics import read_metrics
from critical_periods.reproduction.studies import SEEDS, Study, run_study


def cut_depth_study(epochs: int, after: int, widths: str) -> Study:
    grid = ("sweep=depth", f"model.widths={widths}", "deficit=blur,none", f"deficit.length={epochs}",
            f"schedule.epochs_after_deficit={after}", f"seed={SEEDS}", "probes=none")
    return Study("depth_cut", "the depth study, cut", full=(grid,), quick=(grid,))


def cut_sensitivity_study(epochs: int, after: int, model: str) -> Study:
    """The sensitivity study's first command (blur windows at two onsets, seeds 0-4), cut."""
    grid = ("sweep=window", f"model={model}", f"deficit.length={epochs}", f"schedule.epochs_after_deficit={after}",
            "deficit=blur", f"deficit.onset=0,{epochs}", f"seed={SEEDS}", "probes=none")
    return Study(f"sensitivity_{model}_cut", "the sensitivity study, cut", full=(grid,), quick=(grid,))


def records(sweep_dir: Path) -> dict[str, tuple]:
    out = {}
    for summary in sweep_dir.glob("*/summary.json"):
        rows = read_metrics(summary.parent)
        out[summary.parent.name] = (sorted({(r.get("step"), r.get("epoch"), k) for r in rows for k in r if k not in ("step", "epoch")}, key=repr),
                                    sorted(json.loads(summary.read_text())))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10, help="blur epochs (deficit.length)")
    parser.add_argument("--after", type=int, default=10, help="clean epochs after the deficit")
    parser.add_argument("--widths", default="[512],[512,512,512,512]", help="model.widths grid (depth)")
    parser.add_argument("--study", choices=("depth", "sensitivity_conv1d", "sensitivity_mlp"), default="depth")
    args = parser.parse_args()
    study = (cut_depth_study(args.epochs, args.after, args.widths) if args.study == "depth"
             else cut_sensitivity_study(args.epochs, args.after, args.study.split("_")[1]))
    print(f"load: {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        out, walls = Path(tmp), {}
        for launcher in ("seeds", "basic"):
            started = time.perf_counter()
            run_study(study, out / launcher, quick=False, extra=("logger=none",), threads=1, launcher=launcher)
            walls[launcher] = time.perf_counter() - started
            print(f"{launcher}: {walls[launcher]:.1f} s wall", flush=True)
        grouped, basic = records(out / "seeds" / study.name), records(out / "basic" / study.name)
        same_folders = sorted(grouped) == sorted(basic)
        same_rows = same_folders and all(grouped[k] == basic[k] for k in basic)
        print(f"{len(basic)} jobs; same job folders: {same_folders}; same metric rows and summary keys: {same_rows}")
        print(f"seeds launcher / basic launcher wall time: {walls['seeds'] / walls['basic']:.2f}x "
              f"(saves {walls['basic'] - walls['seeds']:.0f} s of {walls['basic']:.0f} s)")
    sys.exit(0 if same_rows else 1)


if __name__ == "__main__":
    main()
