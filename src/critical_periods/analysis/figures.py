"""The papers' figures, one function per figure. Each takes the sweep's runs and the PNG path, draws
from the completed runs only, and raises :class:`NoData` (with the reason) when the sweep lacks
what the figure needs. Drawn with matplotlib's object API (``Figure``, Agg canvas): no pyplot, no
global state, no display needed.

Errors are plotted in percent; the time axis of trajectories is epochs completed (0 = the initial
weights; see ``curves``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from critical_periods.analysis import break_even as be
from critical_periods.analysis.curves import Series, epoch_anchors, keys_with_prefix, mean_over_runs, series
from critical_periods.analysis.runs import Run, run_labels
from critical_periods.analysis.tables import FISHER, Cell, baselines, plotted_runs, removal_table, sensitivity_table

KIND_ORDER = ("blur", "noise", "vertical_flip", "label_permutation")
LINESTYLES = ("-", "--", ":", "-.")
SPREAD = "band: min-max over runs (seeds)"


class NoData(Exception):
    """The sweep has not the data a figure needs; the message says what is missing."""


def _colour(kind: str) -> str:
    return f"C{KIND_ORDER.index(kind)}" if kind in KIND_ORDER else f"C{4 + sum(map(ord, kind)) % 6}"


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def _with_condition(label: str, cond: str) -> str:
    return f"{label} [{cond}]" if cond else label


def _runs(n: Sequence[int]) -> str:
    """``"3 runs"``, or ``"1-3 runs"`` when the points of a curve average different numbers of runs."""
    low, high = min(n), max(n)
    return f"{low} run{'s' if high > 1 else ''}" if low == high else f"{low}-{high} runs"


# -- 1. final error against removal epoch (Achille et al. Fig. 1/2) ------------------------------------


def error_vs_removal(runs: Sequence[Run], path: Path) -> Path:
    """Final test error against the deficit's removal epoch (onset + length, runs with onset 0), one
    line per deficit kind (and condition): mean over seeds, band = min-max; the no-deficit baseline
    as a horizontal line."""
    cells = removal_table(runs)
    curves: dict[tuple[str, str], list[Cell]] = defaultdict(list)
    for cell in cells:
        curves[(cell.kind, cell.condition)].append(cell)
    if not any(len(c) >= 2 for c in curves.values()):
        raise NoData("needs completed runs of one deficit kind with onset 0 at two or more removal epochs")
    conditions = sorted({cond for _, cond in curves} | set(baselines(runs)))
    style = {cond: LINESTYLES[i % len(LINESTYLES)] for i, cond in enumerate(conditions)}

    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot()
    for (kind, cond), group in sorted(curves.items(), key=lambda item: (_colour(item[0][0]), item[0][1])):
        x = [c.x for c in group]
        ax.plot(x, [100 * c.error.mean for c in group], marker="o", color=_colour(kind), ls=style[cond],
                label=_with_condition(f"{kind} (mean of {_runs([c.error.n for c in group])})", cond))
        if any(c.error.n > 1 for c in group):
            ax.fill_between(x, [100 * c.error.low for c in group], [100 * c.error.high for c in group],
                            color=_colour(kind), alpha=0.2)
    for cond, stat in baselines(runs).items():
        ax.axhline(100 * stat.mean, color="black", ls=style[cond], lw=1,
                   label=_with_condition(f"no deficit (mean of {_runs([stat.n])})", cond))
        if stat.n > 1:
            ax.axhspan(100 * stat.low, 100 * stat.high, color="black", alpha=0.07)
    ax.set_xlabel("deficit removal epoch, onset + length (epochs)")
    ax.set_ylabel("final test error (%)")
    ax.set_title("Final test error vs deficit removal epoch (Achille et al. 2019, Fig. 1)")
    ax.grid(alpha=0.3)
    ax.legend(title=SPREAD, fontsize=8, title_fontsize=8)
    return _save(fig, path)


# -- 2. sensitivity against onset (Achille et al. Fig. 3/4) ---------------------------------------------


def _draw_sensitivity(ax: Axes, cells: Sequence[Cell]) -> None:
    curves: dict[tuple[str, int, str], list[Cell]] = defaultdict(list)
    for cell in cells:
        curves[(cell.kind, cell.length, cell.condition)].append(cell)
    conditions = sorted({cond for *_, cond in curves})
    lengths = sorted({length for _, length, _ in curves})
    for (kind, length, cond), group in sorted(curves.items()):
        x = [c.x for c in group]
        ls = LINESTYLES[(conditions.index(cond) + lengths.index(length)) % len(LINESTYLES)]
        label = f"{kind}, {length}-epoch window (mean of {_runs([c.sensitivity.n for c in group])})"
        ax.plot(x, [100 * c.sensitivity.mean for c in group], marker="o", color=_colour(kind), ls=ls,
                label=_with_condition(label, cond))
        if any(c.sensitivity.n > 1 for c in group):
            ax.fill_between(x, [100 * c.sensitivity.low for c in group], [100 * c.sensitivity.high for c in group],
                            color=_colour(kind), alpha=0.2)
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_xlabel("deficit onset (epoch)")
    ax.set_ylabel("final test error - baseline error (percentage points)")
    ax.grid(alpha=0.3)
    ax.legend(title=SPREAD, fontsize=8, title_fontsize=8)


def _sensitivity_cells(runs: Sequence[Run]) -> list[Cell]:
    cells = sensitivity_table(runs)
    if not cells:
        raise NoData(
            "needs completed runs with a deficit window of one length > 0 at two or more onsets, "
            "and a baseline (deficit none or length 0) of the same condition"
        )
    return cells


def sensitivity_vs_onset(runs: Sequence[Run], path: Path) -> Path:
    """Sensitivity (final test error minus the baseline's, in percentage points) against the onset
    of a deficit window of fixed length; mean over seeds, band = min-max."""
    cells = _sensitivity_cells(runs)
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot()
    _draw_sensitivity(ax, cells)
    ax.set_title("Sensitivity to a deficit window vs its onset (Achille et al. 2019, Fig. 3)")
    return _save(fig, path)


# -- 3. Fisher trace over training, beside the sensitivity (Achille et al. Fig. 4) -----------------------


def _fisher_runs(runs: Sequence[Run]) -> list[Run]:
    return [r for r in plotted_runs(runs) if len(series(r.metrics, FISHER)) >= 2]


def fisher_trace(runs: Sequence[Run], path: Path) -> Path:
    """``fisher/trace`` against epochs completed, one line per completed run (labelled by its
    overrides); beside it the sensitivity curve when the sweep has window runs."""
    with_fisher = _fisher_runs(runs)
    if not with_fisher:
        raise NoData(f"no completed run logged {FISHER} at two or more points (train with probes=fisher or probes=full)")
    try:
        cells = _sensitivity_cells(runs)
    except NoData:
        cells = []
    fig = Figure(figsize=(13 if cells else 7.5, 4.8))
    ax = fig.add_subplot(1, 2 if cells else 1, 1)
    labels = run_labels(with_fisher)
    for i, run in enumerate(with_fisher):
        curve = series(run.metrics, FISHER)
        ax.plot(curve.x, curve.y, marker=".", color=f"C{i % 10}", ls=LINESTYLES[(i // 10) % len(LINESTYLES)], label=labels[run.job])
    ax.set_xlabel("training epochs completed (0 = initial weights)")
    ax.set_ylabel("Fisher information trace tr F (nat$^2$)")
    ax.set_title("Trace of the Fisher information during training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=1 + len(with_fisher) // 12)
    if cells:
        right = fig.add_subplot(1, 2, 2)
        _draw_sensitivity(right, cells)
        right.set_title("Sensitivity to a deficit window vs its onset")
    fig.suptitle("Fisher information and critical period (Achille et al. 2019, Fig. 4)")
    return _save(fig, path)


# -- 4. per-layer share of the Fisher trace ----------------------------------------------------------------


def layer_shares(run: Run) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(x, {layer: share of tr F})`` for one run: the logged ``fisher/share/<layer>``, else the
    per-layer traces ``fisher/trace/<layer>`` divided by ``fisher/trace``."""
    anchors = epoch_anchors(run.metrics)
    share_keys = keys_with_prefix(run.metrics, "fisher/share/")
    if share_keys:
        curves = {k.removeprefix("fisher/share/"): series(run.metrics, k, anchors) for k in share_keys}
    else:
        total = series(run.metrics, FISHER, anchors)
        curves = {}
        for key in keys_with_prefix(run.metrics, f"{FISHER}/"):
            layer = series(run.metrics, key, anchors)
            curves[key.removeprefix(f"{FISHER}/")] = Series(layer.x, layer.y / np.interp(layer.x, total.x, total.y), layer.epoch)
    if not curves:
        return np.empty(0), {}
    x = max((c.x for c in curves.values()), key=len)
    return x, {layer: np.interp(x, c.x, c.y) for layer, c in curves.items() if len(c)}


def fisher_share(runs: Sequence[Run], path: Path, max_panels: int = 4) -> Path:
    """Per-layer share of the Fisher trace against epochs completed (stacked areas), for the
    baseline runs (up to ``max_panels``), or else the first run with per-layer Fisher data."""
    candidates = [r for r in plotted_runs(runs) if len(layer_shares(r)[0]) >= 2]
    if not candidates:
        raise NoData("no completed run logged per-layer Fisher traces (fisher/share/<layer> or fisher/trace/<layer>)")
    chosen = [r for r in candidates if r.is_baseline][:max_panels]
    which = "baseline run" + ("s" if len(chosen) > 1 else "") if chosen else "first run with Fisher data; no baseline has any"
    chosen = chosen or candidates[:1]
    labels = run_labels(chosen) if len(chosen) > 1 else {chosen[0].job: ",".join(chosen[0].overrides) or chosen[0].job}
    fig = Figure(figsize=(6.5 * len(chosen), 4.5))
    for i, run in enumerate(chosen):
        ax = fig.add_subplot(1, len(chosen), i + 1)
        x, shares = layer_shares(run)
        ax.stackplot(x, *shares.values(), labels=list(shares), alpha=0.85)
        ax.set_ylim(0, 1)
        ax.set_xlim(x[0], x[-1])
        ax.set_xlabel("training epochs completed (0 = initial weights)")
        ax.set_ylabel("share of tr F (fraction)")
        ax.set_title(labels[run.job], fontsize=9)
        ax.legend(title="layer", fontsize=7, title_fontsize=7, loc="upper right")
    fig.suptitle(f"Per-layer share of the Fisher information trace ({which})")
    return _save(fig, path)


# -- 5. break-even metrics by learning rate / batch size (Jastrzebski et al.) ---------------------------


BREAK_EVEN_AXES = {
    "break_even/lambda_k1": r"$\lambda_K^1$, top eigenvalue of the gradient covariance K (nat$^2$)",
    "curvature/lambda_h1": r"$\lambda_H^1$, top eigenvalue of the loss Hessian (nat)",
    "break_even/trace_k": r"tr K, total gradient variance (nat$^2$)",
    "break_even/cond_k": r"$\lambda_K^*/\lambda_K^1$ (ratio)",
}


def setting_label(run: Run, varied: Sequence[str]) -> str:
    return ",".join(f"{name}={getattr(run, name)}" for name in varied) or "all runs"


def break_even(runs: Sequence[Run], path: Path) -> Path:
    """``lambda_K^1``, ``lambda_H^1`` (and ``tr K``, ``lambda_K^*/lambda_K^1`` when logged) against
    epochs completed, one line per learning rate or batch size (whichever varies): mean over seeds,
    band = min-max; dotted verticals at the end of the epoch in which each setting's runs first
    reach the common training accuracy (see ``break_even``)."""
    candidates = be.break_even_runs(runs)
    if not candidates:
        raise NoData("no completed run logged break-even metrics (train with probes=break_even or probes=full)")
    keys = [k for k in be.PEAK_METRICS if any(r.has(k) for r in candidates)]
    varied = be.varying(candidates)
    peaks = {p.run.job: p for p in be.compare(candidates)}
    threshold = next(iter(peaks.values())).threshold
    groups: dict[str, list[Run]] = defaultdict(list)
    for run in sorted(candidates, key=lambda r: tuple(-1 if getattr(r, n) is None else getattr(r, n) for n in varied)):
        groups[setting_label(run, varied)].append(run)

    columns = 2 if len(keys) > 1 else 1
    rows = (len(keys) + columns - 1) // columns
    fig = Figure(figsize=(6.5 * columns, 4.2 * rows))
    for i, key in enumerate(keys):
        ax = fig.add_subplot(rows, columns, i + 1)
        for j, (label, group) in enumerate(groups.items()):
            band = mean_over_runs([series(r.metrics, key) for r in group if r.has(key)])
            if not len(band.x):
                continue
            ax.plot(band.x, band.mean, marker=".", color=f"C{j % 10}", label=f"{label} (mean of {_runs(band.n)})")
            if band.n.max() > 1:
                ax.fill_between(band.x, band.low, band.high, color=f"C{j % 10}", alpha=0.2)
            for cutoff in sorted({peaks[r.job].cutoff_epoch for r in group} - {None}):
                ax.axvline(cutoff + 1, color=f"C{j % 10}", ls=":", lw=1)
        ax.set_xlabel("training epochs completed (0 = initial weights)")
        ax.set_ylabel(BREAK_EVEN_AXES[key], fontsize=8)
        ax.set_title(key, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title=SPREAD if any(len(g) > 1 for g in groups.values()) else None, title_fontsize=7)
    reached = f"{100 * threshold:.1f}%" if threshold is not None else "n/a"
    fig.suptitle(
        f"Break-even metrics by {' and '.join(varied) or 'run'} (Jastrzebski et al. 2020); "
        f"dotted: end of the epoch a run first reaches the common train accuracy {reached}",
        fontsize=10,
    )
    fig.tight_layout()
    return _save(fig, path)


FIGURES: dict[str, Callable[[Sequence[Run], Path], Path]] = {
    "error_vs_removal.png": error_vs_removal,
    "sensitivity_vs_onset.png": sensitivity_vs_onset,
    "fisher_trace.png": fisher_trace,
    "fisher_share.png": fisher_share,
    "break_even.png": break_even,
}


def draw_all(runs: Sequence[Run], out_dir: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """Every figure the sweep has data for: ``(drawn {name: path}, skipped {name: reason})``. A
    figure that was drawn by an earlier analysis but is now skipped is deleted, so the folder never
    shows a stale figure."""
    drawn, skipped = {}, {}
    for name, draw in FIGURES.items():
        try:
            drawn[name] = draw(runs, out_dir / name)
        except NoData as reason:
            skipped[name] = str(reason)
            (out_dir / name).unlink(missing_ok=True)
    return drawn, skipped
