"""Reproduce the papers' phenomena on MNIST-1D and write the report:

    python -m critical_periods.reproduce [--quick] [--out DIR] [--docs DIR] [--jobs N]

Runs the studies of ``reproduction/studies.py`` (Hydra multiruns of the project's sweeps, resumable:
run it again after an interruption and finished jobs are skipped), analyses each sweep with
``critical_periods.analyze``, judges each claim by the rule stated in ``reproduction/claims.py``,
and writes ``DOCS/reproduction.md`` with the figures in ``DOCS/figures/``.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from critical_periods.analysis.runs import load_sweep
from critical_periods.analyze import analyze
from critical_periods.reproduction.claims import break_even_claim, critical_period_claims, fisher_claims
from critical_periods.reproduction.report import copy_figures, write_report
from critical_periods.reproduction.studies import STUDIES, run_study


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m critical_periods.reproduce", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a cut-down grid (minutes); too short to judge the claims")
    parser.add_argument("--out", type=Path, default=Path("reproduction"), help="where the sweeps go (default ./reproduction)")
    parser.add_argument("--docs", type=Path, default=Path("docs"), help="where the report goes (default ./docs)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="studies run at once, one torch thread each (default 2, one per core of a 2-core machine)")
    parser.add_argument("--wandb", action="store_true", help="log every run to W&B (offline unless WANDB_MODE says otherwise)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    out = args.out.resolve()
    extra = () if args.wandb else ("logger=none",)
    threads = 1 if args.jobs > 1 else None

    def run(study):
        print(f"[{time.strftime('%H:%M:%S')}] {study.name}: {study.claim}", flush=True)
        elapsed = run_study(study, out, args.quick, extra, threads)
        print(f"[{time.strftime('%H:%M:%S')}] {study.name}: done in {elapsed / 60:.1f} min", flush=True)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for future in [pool.submit(run, study) for study in STUDIES]:
            future.result()

    sweep_dirs = {study.name: out / study.name for study in STUDIES}
    for sweep_dir in sweep_dirs.values():
        analyze(sweep_dir)
    runs = {name: load_sweep(path) for name, path in sweep_dirs.items()}
    claims = [
        *critical_period_claims(runs["kinds"], runs["constant_lr"]),
        *fisher_claims(runs["fisher_window"]),
        *break_even_claim(runs["break_even_lr"], "lr"),
        *break_even_claim(runs["break_even_batch"], "batch"),
    ]
    figures = copy_figures(sweep_dirs, args.docs / "figures")
    command = "python -m critical_periods.reproduce" + (" --quick" if args.quick else "")
    all_runs = [run for study_runs in runs.values() for run in study_runs]
    fit_seconds = sum(run.fit_seconds or 0.0 for run in all_runs)
    report = write_report(args.docs / "reproduction.md", claims, figures, time.perf_counter() - started,
                          max(1, args.jobs), fit_seconds, len(all_runs), command, args.quick)
    for claim in claims:
        print(f"{claim.verdict:>15}  {claim.title}")
    print(f"report: {report}")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
