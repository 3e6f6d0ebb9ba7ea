"""What the analysis prints: the state of the sweep's jobs, which figures were drawn or skipped
and why, and the headline numbers as small text tables."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from critical_periods.analysis.runs import Run
from critical_periods.analysis.tables import Cell, baselines, removal_table, sensitivity_table
from critical_periods.vocabulary import RunStatus


def status_summary(runs: Sequence[Run]) -> str:
    """``"12 runs: 10 completed, 1 failed (job: error), 1 running (job); skipped from figures: ..."``"""
    counts = Counter(r.status for r in runs)
    parts = []
    for status in RunStatus:  # in the order of the enum
        if not counts[status]:
            continue
        part = f"{counts[status]} {status.value.replace('_', ' ')}"
        if status != RunStatus.COMPLETED:
            detail = "; ".join(f"{r.job}: {r.error}" if r.error else r.job for r in runs if r.status == status)
            part += f" ({detail})"
        parts.append(part)
    left_out = [f"{r.job} ({r.status})" for r in runs if not r.completed]
    lines = [
        f"{len(runs)} run{'s' if len(runs) != 1 else ''}: {', '.join(parts)}",
        f"skipped from figures: {', '.join(left_out) if left_out else 'none'}",
    ]
    lines += [f"warning: {r.job}: {note}" for r in runs for note in r.notes]
    return "\n".join(lines)


def figures_summary(drawn: dict[str, Any], skipped: dict[str, str]) -> str:
    lines = [f"drew: {', '.join(drawn) if drawn else 'no figure'}"]
    lines += [f"skipped {name}: {reason}" for name, reason in skipped.items()]
    return "\n".join(lines)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns, two spaces apart."""
    cells = [[str(h) for h in headers], *[["" if v is None else str(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells)


def _percent(cell_stat) -> str:
    text = f"{100 * cell_stat.mean:.2f}"
    return text if cell_stat.n == 1 else f"{text} [{100 * cell_stat.low:.2f}, {100 * cell_stat.high:.2f}]"


def headline(runs: Sequence[Run]) -> str:
    """Final test error per removal epoch per deficit kind (and the baselines), and the sensitivity
    per onset, in percent: mean over seeds, [min, max] when there are several."""
    parts = []
    removal: list[Cell] = removal_table(runs)
    base = baselines(runs)
    if removal or base:
        rows = [("none (baseline)", cond, "-", stat.n, _percent(stat)) for cond, stat in base.items()]
        rows += [(c.kind, c.condition, c.x, c.error.n, _percent(c.error)) for c in removal]
        parts.append(
            "Final test error (%) by deficit removal epoch (onset 0); mean over seeds [min, max]:\n"
            + format_table(("deficit", "condition", "removal epoch", "runs", "test error %"), rows)
        )
    sensitivity = sensitivity_table(runs)
    if sensitivity:
        rows = [(c.kind, c.length, c.condition, c.x, c.sensitivity.n, _percent(c.sensitivity)) for c in sensitivity]
        parts.append(
            "Sensitivity: final test error - the matched no-deficit run's (same seed, onset, length; else the mean\n"
            "baseline), percentage points, by window onset:\n"
            + format_table(("deficit", "length", "condition", "onset", "runs", "error - baseline"), rows)
        )
    return "\n\n".join(parts)


def break_even_summary(setting_rows: Sequence[dict[str, Any]]) -> str:
    """The per-setting peaks of break_even.csv, up to the epoch each run reaches the threshold accuracy."""
    if not setting_rows:
        return ""
    threshold = setting_rows[0]["train_acc_threshold"]

    def number(value: float | None) -> str:
        return "" if value is None else f"{value:.4g}"

    rows = [
        (r["lr"], r["batch_size"], r["n_runs"], r["cutoff_epochs"],
         number(r["lambda_k1_peak"]), number(r["lambda_h1_peak"]), number(r["trace_k_peak"]), number(r["cond_k_peak"]))
        for r in setting_rows
    ]
    reached = "n/a" if threshold is None else f"{100 * threshold:.2f}%"
    return (
        f"Break-even peaks up to training accuracy {reached} (mean over seeds):\n"
        + format_table(("lr", "batch", "runs", "cut-off epoch (seed:epoch)", "max lambda_K1", "max lambda_H1", "max tr K", "max cond K"), rows)
    )
