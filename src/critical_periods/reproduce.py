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
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from critical_periods.analysis.runs import Run, SweepError, load_sweep
from critical_periods.analyze import analyze
from critical_periods.reproduction import claims as c
from critical_periods.reproduction.claims_cross_seed import STUDY as CROSS_SEED, cross_seed_claims
from critical_periods.reproduction.claims_early_linear import early_linear_claims, load_runs as load_early_runs
from critical_periods.reproduction import claims_condensation as cc
from critical_periods.reproduction.report import JSON_FILE, copy_figures, write_record
from critical_periods.reproduction.rules import RULES_FILE, Rules, RulesError, load_rules, rules_commit, rules_modified
from critical_periods.reproduction.statistics import method_text
from critical_periods.reproduction.studies import BUDGET, LAUNCHER, MODELS, STUDIES, Study, run_order, run_study
from critical_periods.reproduction.claims_zhang import zhang_claims


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m critical_periods.reproduce", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a cut-down grid (minutes); too short to judge the claims")
    parser.add_argument("--out", type=Path, default=Path("reproduction"), help="where the sweeps go (default ./reproduction)")
    parser.add_argument("--docs", type=Path, default=Path("docs"), help="where the report goes (default ./docs)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="studies run at once, one torch thread each (default 2, one per core of a 2-core machine)")
    parser.add_argument("--rules", type=Path, default=RULES_FILE,
                        help="the pre-registered decision rules (default: docs/rules.yaml of this checkout)")
    parser.add_argument("--wandb", action="store_true", help="log every run to W&B (offline unless WANDB_MODE says otherwise)")
    parser.add_argument("--report-only", action="store_true",
                        help="judge the sweeps already in --out and rewrite the report, training nothing; the wall "
                             "times are kept from the record in --docs of the command that trained them")
    return parser.parse_args(argv)


def timed_studies(studies: Sequence[Study], out: Path, args: argparse.Namespace,
                  threads: int | None) -> tuple[dict[str, float], float]:
    """Run the studies: (minutes per study, wall seconds). With ``--report-only`` nothing runs and
    the times are the earlier record's (that command trained the sweeps judged now)."""
    if args.report_only:
        try:
            earlier = json.loads((args.docs / JSON_FILE).read_text())["run"]
            return dict(earlier["study_minutes"]), 60 * float(earlier["wall_minutes"])
        except (OSError, ValueError, KeyError) as error:
            print(f"error: --report-only needs the record of the run that trained the sweeps, "
                  f"{args.docs / JSON_FILE} ({error})", file=sys.stderr)
            raise SystemExit(2) from None
    started = time.perf_counter()
    study_minutes = run_studies(studies, out, args, () if args.wandb else ("logger=none",), threads)
    return study_minutes, time.perf_counter() - started


def judge(runs: dict[str, Sequence[Run]], rules: Rules, out: Path | None = None) -> tuple[list[c.Claim], list[dict[str, Any]]]:
    """Every claim, per model and lr schedule, from the studies' runs (a missing study gives
    inconclusive claims), judged by ``rules``."""
    get = lambda name: runs.get(name, [])  # noqa: E731
    j = c.Judge(rules)
    figure = lambda study, name: f"{study}_{name}"  # noqa: E731  the name copy_figures gives it
    claims: list[c.Claim] = []
    for model in MODELS:
        for schedule, prefix in (("decaying", "kinds"), ("constant", "constant_lr"), ("restart", "lr_restart")):
            study = f"{prefix}_{model}"
            claims += c.removal_claims(j, get(study), model, schedule, figure(study, "error_vs_removal.png"))
    for model in MODELS:
        clean, constant = f"sensitivity_{model}", f"sensitivity_constant_{model}"
        claims += [c.sensitivity_claim(j, get(clean), model, "decaying", figure(clean, "sensitivity_vs_onset.png")),
                   c.sensitivity_claim(j, get(constant), model, "constant", figure(constant, "sensitivity_vs_onset.png")),
                   c.fisher_claim(j, get(clean), model, figure(clean, "fisher_trace.png")),
                   c.stiffness_overfitting_claim(j, get(clean), model, figure(clean, "stiffness.png")),
                   c.frequency_claim(j, get(clean), model, figure(clean, "frequency.png"))]
    claims.append(c.depth_claim(j, get("depth"), figure("depth", "error_vs_depth.png")))
    claims.append(c.stiffness_lr_claim(j, get("stiffness_lr"), figure("stiffness_lr", "stiffness.png")))
    records = []
    for name, setting in (("break_even_lr", "lr"), ("break_even_batch", "batch_size")):
        claim, rows = c.break_even_claim(j, get(name), setting, name, figure(name, "break_even.png"))
        claims.append(claim)
        records += rows
    claims.append(c.cka_claim(j, get("representations"), figure("representations", "cka_deficit_vs_clean.png")))
    claims += zhang_claims(j, get("zhang_fit"), get("zhang_window"), figure)
    claims += cross_seed_claims(j, get(CROSS_SEED), figure)
    early = load_early_runs(out / "early_linear") if out is not None else []  # the early-time runner's records
    claims += early_linear_claims(j, early, figure("early_linear", "early_linear.png"))
    claims += [cc.condensation_claim(j, get("condensation"), figure("condensation", "condensation.png")),
               cc.critical_length_claim(j, get("condensation"), figure("condensation", "critical_length.png"))]
    return claims, records


def rules_record(rules: Rules, path: Path) -> dict[str, Any]:
    """What the report says about the rules: the file's commit, whether the working copy differs from
    it, and the method."""
    return {
        "file": path.name, "commit": rules_commit(path), "modified": rules_modified(path), "method": rules.method,
        "method_text": method_text(rules.n_resamples, rules.random_state),
    }


def load_study(sweep_dir: Path) -> list[Run]:
    """The study's runs, analysed (tables and figures in ``analysis/``); none if it never ran."""
    try:
        analyze(sweep_dir)
        return load_sweep(sweep_dir)
    except SweepError:
        return []


def run_studies(studies: Sequence[Study], out: Path, args: argparse.Namespace, extra: tuple[str, ...],
                threads: int | None) -> dict[str, float]:
    """Run the studies, ``args.jobs`` at a time; returns each one's wall time in minutes."""
    study_minutes: dict[str, float] = {}

    def run(study: Study) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {study.name}: {study.claim}", flush=True)
        elapsed = run_study(study, out, args.quick, extra, threads)
        study_minutes[study.name] = elapsed / 60
        print(f"[{time.strftime('%H:%M:%S')}] {study.name}: done in {elapsed / 60:.1f} min", flush=True)

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for future in [pool.submit(run, study) for study in run_order(studies)]:
            future.result()
    return study_minutes


def run_facts(args: argparse.Namespace, threads: int | None, wall_seconds: float, runs: dict[str, Sequence[Run]],
              study_minutes: dict[str, float]) -> dict[str, Any]:
    """What the report says about the command: machine, launcher, wall and training times, branching."""
    all_runs = [r for study_runs in runs.values() for r in study_runs]
    return {
        "command": "python -m critical_periods.reproduce" + (" --quick" if args.quick else ""),
        "quick": args.quick,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, no GPU, Python {platform.python_version()}, "
                   f"torch {torch.__version__}" + (", one torch thread per study" if threads else ""),
        "jobs": max(1, args.jobs),
        "launcher": LAUNCHER,
        "wall_minutes": wall_seconds / 60,
        "runs": len(all_runs),
        "fit_minutes": sum(r.fit_seconds or 0.0 for r in all_runs) / 60,
        "epochs_recorded": sum(r.summary.epochs or 0 for r in all_runs if r.summary is not None),
        "epochs_taken_over": sum(r.branched_from_epoch or 0 for r in all_runs),
        "runs_branched": sum(r.branched_from_epoch is not None for r in all_runs),
        "study_minutes": study_minutes,
        "rejudged": args.report_only,
    }


def print_outcome(claims: Sequence[c.Claim], break_even_rows: list[dict[str, Any]]) -> None:
    """The break-even runs left out of the slopes, and one line per claim."""
    for row in break_even_rows:
        if not row["compared"]:
            print(f"left out of {row['study']}: lr {row['lr']}, batch {row['batch_size']}, seed {row['seed']}: max lambda_H^1 "
                  f"{row['max_lambda_h1']} vs 2/lr {row['two_over_lr']}, break-even epoch {row['break_even_epoch']}, "
                  f"threshold epoch {row['threshold_epoch']}")
    for claim in claims:
        control = f"  (control: {claim.control.status.value})" if claim.control is not None else ""
        print(f"{claim.status.value:>15}  {claim.id}{control}")


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    try:  # a broken rules file is refused before any run starts
        rules = load_rules(args.rules)
    except RulesError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    out = args.out.resolve()
    threads = 1 if args.jobs > 1 else None
    skipped = {s.name: f"needs {', '.join(s.missing())}" for s in STUDIES if s.missing()}
    studies: list[Study] = [s for s in STUDIES if s.name not in skipped]
    for name, why in skipped.items():
        print(f"skipped {name}: {why} (its claims are inconclusive)", flush=True)
    study_minutes, wall_seconds = timed_studies(studies, out, args, threads)

    sweep_dirs = {study.name: out / study.name for study in studies}
    runs = {name: load_study(path) for name, path in sweep_dirs.items()}
    claims, break_even_rows = judge(runs, rules, out)
    figures = copy_figures(sweep_dirs, args.docs / "figures")
    rules_info = rules_record(rules, args.rules)

    def figure_path(name: str | None) -> str | None:
        """``docs/figures/<name>`` if the figure was drawn and copied (else ``None``)."""
        return f"{args.docs.name}/figures/{name}" if name and (args.docs / "figures" / name).exists() else None

    record = {
        "run": run_facts(args, threads, wall_seconds, runs, {s.name: study_minutes[s.name] for s in studies if s.name in study_minutes}),
        "rules": rules_info,
        "claims": [claim.to_json(rules_info["commit"], figure_path(claim.figure)) for claim in claims],
        "not_run": [{"id": r.id, "paper": r.paper, "statement": r.statement, "requires": r.requires}
                    for r in rules.rules if r.requires],
        "retired": [{"id": r.id, "statement": r.statement, "retired_because": r.retired_because}
                    for r in rules.rules if r.kind == "retired"],
        "break_even_runs": break_even_rows,
        "protocol": {s.name: {"claim": s.claim, **s.protocol, "runs": len(runs.get(s.name, []))} for s in STUDIES},
        "skipped": skipped,
        "budget": BUDGET,
        "figures": figures,
    }
    json_path, report = write_record(args.docs, c.jsonable(record))
    print_outcome(claims, break_even_rows)
    print(f"record: {json_path}\nreport: {report}")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
