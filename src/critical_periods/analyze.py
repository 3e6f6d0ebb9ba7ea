"""Sweep directory -> tables and the papers' figures, from the run records on disk only.

    python -m critical_periods.analyze SWEEP_DIR [--out DIR] [--wandb]

Writes into ``SWEEP_DIR/analysis/`` (or ``--out``):

* ``runs.csv``: one row per job (columns in ``analysis.tables.RUNS_COLUMNS``), failed, diverged
  and running jobs included with their status;
* ``break_even.csv`` (per lr / batch size) and ``break_even_runs.csv`` (per run), when the sweep
  varies the learning rate or the batch size and logged break-even metrics: peaks before a common
  training accuracy, and over the whole run (see ``analysis.break_even``);
* the figures the sweep has data for (``analysis.figures.FIGURES``: the papers' figures, and those of
  the stiffness, frequency and CKA probes), from completed runs only, labelled in words from the
  runs' resolved configs (``analysis.labels``).

Prints the state of the jobs, which figures were drawn or skipped and why, and the headline
numbers. ``--wandb`` also logs the tables and figures to one W&B summary run (see
``analysis.wandb_summary``). Exit code 1, naming the path, when there is no job to analyse.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from critical_periods.analysis import break_even as be
from critical_periods.analysis import report
from critical_periods.analysis.figures import draw_all
from critical_periods.analysis.plotting import DEFAULT_VECTOR, PNG_DPI, VECTOR_FORMATS
from critical_periods.analysis.runs import Run, SweepError, load_sweep
from critical_periods.analysis.tables import RUNS_COLUMNS, runs_table, write_csv

RUNS_CSV = "runs.csv"
BREAK_EVEN_CSV = "break_even.csv"
BREAK_EVEN_RUNS_CSV = "break_even_runs.csv"


@dataclass
class Analysis:
    """What one analysis produced."""

    runs: list[Run]
    out_dir: Path
    tables: dict[str, tuple[list[str], list[dict[str, Any]]]] = field(default_factory=dict)  # file -> (columns, rows)
    figures: dict[str, Path] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # file -> why it was not made
    wandb_dir: Path | None = None


def break_even_tables(runs: Sequence[Run], threshold: float | None = be.PAPER_TRAIN_ACC_THRESHOLD,
                      ) -> tuple[dict[str, tuple[list[str], list[dict[str, Any]]]], str | None]:
    """``({file: (columns, rows)}, None)``, or ``({}, why not)`` when the sweep has no comparison.
    ``threshold``: the training accuracy up to which peaks are taken (``None``: the best accuracy
    every run of the comparison reaches)."""
    candidates = be.break_even_runs(runs)
    if not candidates:
        return {}, "no completed run logged break-even metrics"
    if not be.varying(candidates):
        return {}, "the runs with break-even metrics all share one learning rate and batch size"
    results = be.compare(candidates, threshold)
    return {
        BREAK_EVEN_CSV: (be.SETTING_COLUMNS, be.per_setting(results)),
        BREAK_EVEN_RUNS_CSV: (be.RUN_COLUMNS, [r.row() for r in results]),
    }, None


def analyze(sweep_dir: Path | str, out_dir: Path | str | None = None, use_wandb: bool = False,
            threshold: float | None = be.PAPER_TRAIN_ACC_THRESHOLD, dpi: int = PNG_DPI,
            vector: str | None = DEFAULT_VECTOR) -> Analysis:
    """Read the sweep, write the tables and figures into ``out_dir`` (default ``SWEEP_DIR/analysis``):
    each figure a PNG at ``dpi`` and a ``vector`` file (pdf, svg; ``None``: none) beside it.
    Raises :class:`SweepError` when ``sweep_dir`` is missing or holds no job."""
    sweep_dir = Path(sweep_dir)
    out_dir = Path(out_dir) if out_dir is not None else sweep_dir / "analysis"
    runs = load_sweep(sweep_dir, skip=[out_dir])
    out_dir.mkdir(parents=True, exist_ok=True)
    result = Analysis(runs=runs, out_dir=out_dir)

    result.tables[RUNS_CSV] = (RUNS_COLUMNS, runs_table(runs))
    tables, why_not = break_even_tables(runs, threshold)
    result.tables.update(tables)
    if why_not:
        result.skipped[BREAK_EVEN_CSV] = why_not
        for stale in (BREAK_EVEN_CSV, BREAK_EVEN_RUNS_CSV):
            (out_dir / stale).unlink(missing_ok=True)
    for name, (columns, rows) in result.tables.items():
        write_csv(out_dir / name, rows, columns)

    result.figures, skipped = draw_all(runs, out_dir, dpi=dpi, vector=vector)
    result.skipped.update(skipped)
    if use_wandb:
        from critical_periods.analysis.wandb_summary import log_summary_run

        result.wandb_dir = log_summary_run(runs, out_dir, result.tables, result.figures)
    return result


def render(result: Analysis) -> str:
    """The text ``main`` prints."""
    parts = [
        report.status_summary(result.runs),
        f"wrote to {result.out_dir}: {', '.join([*result.tables, *result.figures])}",
        report.figures_summary(result.figures, {k: v for k, v in result.skipped.items() if k.endswith(".png")}),
    ]
    if BREAK_EVEN_CSV in result.skipped:
        parts.append(f"skipped {BREAK_EVEN_CSV}: {result.skipped[BREAK_EVEN_CSV]}")
    for text in (report.headline(result.runs), report.break_even_summary(result.tables.get(BREAK_EVEN_CSV, ((), []))[1])):
        if text:
            parts.append("\n" + text)
    if result.wandb_dir is not None:
        parts.append(f"\nW&B summary run: {result.wandb_dir}")
    return "\n".join(parts)


def _threshold(text: str) -> float | None:
    if text == "common":
        return None
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a training accuracy in (0, 1] (or 'common')")
    return value


def _dpi(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 10 <= value <= 1200:
        raise argparse.ArgumentTypeError(f"{text} is not a resolution in dots per inch: a whole number from 10 to 1200")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m critical_periods.analyze",
        description="Tables (runs.csv, break_even.csv) and the figures (papers' and probes') from a sweep's run records.",
    )
    parser.add_argument("sweep_dir", type=Path, help="a Hydra multirun directory (searched recursively for job dirs)")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: SWEEP_DIR/analysis)")
    parser.add_argument("--train-acc-threshold", type=_threshold, default=be.PAPER_TRAIN_ACC_THRESHOLD,
                        help="break-even peaks are taken up to the first epoch with this training accuracy "
                             "(default 0.6, Jastrzebski et al.'s line), or 'common': the best accuracy every run reaches")
    parser.add_argument("--dpi", type=_dpi, default=PNG_DPI,
                        help=f"resolution of the PNG figures (default {PNG_DPI}; 300 for a paper)")
    parser.add_argument("--vector", choices=[*VECTOR_FORMATS, "none"], default=DEFAULT_VECTOR,
                        help=f"the vector file written beside each PNG (default {DEFAULT_VECTOR}; none: PNG only)")
    parser.add_argument("--wandb", action="store_true",
                        help="also log the tables and figures to one W&B run (mode from WANDB_MODE, default offline)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = analyze(args.sweep_dir, args.out, use_wandb=args.wandb, threshold=args.train_acc_threshold,
                         dpi=args.dpi, vector=None if args.vector == "none" else args.vector)
    except SweepError as error:
        print(f"analyze: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
