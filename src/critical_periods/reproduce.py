"""Reproduce the papers' phenomena on MNIST-1D and write the record and the report:

    python -m critical_periods.reproduce [--quick] [--out DIR] [--docs DIR] [--jobs N]

Runs the studies of ``reproduction/studies.py`` (Hydra multiruns of the project's sweeps, resumable:
run it again after an interruption and finished jobs are skipped), analyses each sweep with
``critical_periods.analyze``, judges each claim by the rule stated in ``reproduction/claims.py``,
and writes ``DOCS/reproduction.json`` and, from it, ``DOCS/reproduction.md`` with the figures in
``DOCS/figures/``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from critical_periods.vocabulary import DeficitKind
from critical_periods.analysis import break_even as be
from critical_periods.analysis.runs import Run, SweepError, load_sweep
from critical_periods.analyze import analyze
from critical_periods.reproduction import claims as c
from critical_periods.reproduction.report import copy_figures, write_record
from critical_periods.reproduction.studies import STUDIES, Study, run_study


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m critical_periods.reproduce", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a cut-down grid (minutes); too short to judge the claims")
    parser.add_argument("--out", type=Path, default=Path("reproduction"), help="where the sweeps go (default ./reproduction)")
    parser.add_argument("--docs", type=Path, default=Path("docs"), help="where the report goes (default ./docs)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="studies run at once, one torch thread each (default 2, one per core of a 2-core machine)")
    parser.add_argument("--wandb", action="store_true", help="log every run to W&B (offline unless WANDB_MODE says otherwise)")
    return parser.parse_args(argv)


def judge(runs: dict[str, Sequence[Run]]) -> tuple[list[c.Claim], list[dict[str, Any]]]:
    """Every claim, per model, from the studies' runs (a missing study gives inconclusive claims)."""
    get = lambda name: runs.get(name, [])  # noqa: E731
    all_kinds = [k.value for k in (DeficitKind.BLUR, DeficitKind.VERTICAL_FLIP, DeficitKind.LABEL_PERMUTATION, DeficitKind.NOISE)]
    decaying = "lr x0.97 per epoch"
    claims = c.critical_period_claims(
        c.RemovalStudy.of(get("kinds_mlp"), all_kinds, decaying, "mlp"),
        [c.RemovalStudy.of(get("constant_lr"), all_kinds, "constant lr", "mlp"),
         c.RemovalStudy.of(get("lr_restart"), all_kinds, f"{decaying}, restarted at removal", "mlp")],
    )
    claims += c.critical_period_claims(c.RemovalStudy.of(get("kinds_conv1d"), all_kinds, decaying, "conv1d"))
    for model in ("mlp", "conv1d"):
        study = get(f"sensitivity_{model}")
        claims += [c.fisher_rise_claim(study, model), c.sensitivity_claim(study, model)]
    for model in ("mlp", "conv1d"):
        study = get(f"sensitivity_{model}")
        claims += [c.stiffness_claim(study, model), c.frequency_claim(study, model)]
    claims.append(c.cka_claim(get("representations")))
    records = []
    for name, setting in (("break_even_lr", "lr"), ("break_even_batch", "batch_size")):
        claim, rows = c.break_even_claim(get(name), setting, be.PAPER_TRAIN_ACC_THRESHOLD, name)
        claims += claim
        records += rows
    return claims, records


def load_study(sweep_dir: Path) -> list[Run]:
    """The study's runs, analysed (tables and figures in ``analysis/``); none if it never ran."""
    try:
        analyze(sweep_dir)
        return load_sweep(sweep_dir)
    except SweepError:
        return []


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    out = args.out.resolve()
    extra = () if args.wandb else ("logger=none",)
    threads = 1 if args.jobs > 1 else None
    skipped = {s.name: f"needs {', '.join(s.missing())}" for s in STUDIES if s.missing()}
    studies: list[Study] = [s for s in STUDIES if s.name not in skipped]

    def run(study: Study) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {study.name}: {study.claim}", flush=True)
        elapsed = run_study(study, out, args.quick, extra, threads)
        print(f"[{time.strftime('%H:%M:%S')}] {study.name}: done in {elapsed / 60:.1f} min", flush=True)

    for name, why in skipped.items():
        print(f"skipped {name}: {why} (its claims are inconclusive)", flush=True)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for future in [pool.submit(run, study) for study in studies]:
            future.result()

    sweep_dirs = {study.name: out / study.name for study in studies}
    runs = {name: load_study(path) for name, path in sweep_dirs.items()}
    claims, break_even_rows = judge(runs)
    all_runs = [r for study_runs in runs.values() for r in study_runs]
    record = {
        "run": {
            "command": "python -m critical_periods.reproduce" + (" --quick" if args.quick else ""),
            "quick": args.quick,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, no GPU, Python {platform.python_version()}, "
                       f"torch {torch.__version__}" + (", one torch thread per study" if threads else ""),
            "jobs": max(1, args.jobs),
            "wall_minutes": (time.perf_counter() - started) / 60,
            "runs": len(all_runs),
            "fit_minutes": sum(r.fit_seconds or 0.0 for r in all_runs) / 60,
            "epochs_recorded": sum(r.summary.epochs or 0 for r in all_runs if r.summary is not None),
            "epochs_taken_over": sum(r.branched_from_epoch or 0 for r in all_runs),
            "runs_branched": sum(r.branched_from_epoch is not None for r in all_runs),
        },
        "claims": [claim.to_json() for claim in claims],
        "break_even_runs": break_even_rows,
        "protocol": {s.name: {"claim": s.claim, **s.protocol, "runs": len(runs.get(s.name, []))} for s in STUDIES},
        "skipped": skipped,
        "figures": copy_figures(sweep_dirs, args.docs / "figures"),
    }
    json_path, report = write_record(args.docs, c.jsonable(record))
    for row in break_even_rows:
        if not row["compared"]:
            print(f"left out of {row['study']}: lr {row['lr']}, batch {row['batch_size']}, seed {row['seed']}: max lambda_H^1 "
                  f"{row['max_lambda_h1']} vs 2/lr {row['two_over_lr']}, break-even epoch {row['break_even_epoch']}, "
                  f"threshold epoch {row['threshold_epoch']}")
    for claim in claims:
        print(f"{claim.verdict:>15}  {claim.model:>7}  {claim.title}")
    print(f"record: {json_path}\nreport: {report}")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
