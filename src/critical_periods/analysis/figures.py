"""The papers' figures, one function per figure. Each takes the sweep's runs, draws from the completed
runs only, and returns a matplotlib ``Figure`` (object API, Agg canvas: no pyplot, no global state,
no display needed), or raises :class:`NoData` with the reason when the sweep lacks what it needs.
``draw_all`` saves them as PNGs, each with a vector file (PDF by default) beside it.

Conventions: errors in percent; trajectories against epochs completed (0 = the initial weights; see
``curves``), one line per setting = the mean over its seeds, band = min-max over them; deficit
windows shaded; labels in words from the runs' resolved configs (``labels``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from critical_periods.record import metric_names as mn
from critical_periods.analysis import break_even as be
from critical_periods.analysis import probe_figures
from critical_periods.record.epochs import epoch_anchors
from critical_periods.analysis.curves import Series, first_reaching, keys_with_prefix, mean_over_runs, series
from critical_periods.analysis.labels import SEED_BAND, kind_words, metric_label, runs_count, schedule_words, settings_words, value_words
from critical_periods.analysis.plotting import (
    DEFAULT_VECTOR, PNG_DPI, VECTOR_FORMATS, EpochAxes, Group, NoData, by_words, draw_metrics, epoch_axes, group_runs,
    has_early_probes, integer_ticks, legend, save,
)
from critical_periods.analysis.runs import Run, condition, hidden_layers, varying_settings
from critical_periods.analysis.tables import Cell, baselines, plotted_runs, removal_table, sensitivity_table

__all__ = ["NoData", "FIGURES", "draw_all"]

KIND_COLOURS = {"none": "black", "blur": "C0", "noise": "C1", "vertical_flip": "C2", "label_permutation": "C3",
                "random_labels": "C4", "shuffled_pixels": "C5"}
LINESTYLES = ("-", "--", ":", "-.")


def _colour(kind: str) -> str:
    return KIND_COLOURS.get(kind, f"C{4 + sum(map(ord, kind)) % 6}")


def _with_condition(label: str, cond: str) -> str:
    return f"{label} [{cond}]" if cond else label


def condition_words(runs: Sequence[Run]) -> dict[str, str]:
    """``tables``' condition string of each run -> the same condition in words."""
    keys = varying_settings(runs)
    return {condition(r, keys): settings_words(r, keys) for r in runs}


# -- 1. final error against removal epoch (Achille et al. Fig. 1 for blur, Fig. 2 for the kinds) --------


def _schedule_line(runs: Sequence[Run]) -> str:
    """A second title line naming the lr schedule the runs share (the Achille curves depend on it)."""
    words = schedule_words(runs)
    return f"\n{words}" if words else ""


def error_vs_removal(runs: Sequence[Run]) -> Figure:
    """Final test error against the deficit's removal epoch (onset + length, runs with onset 0), one
    line per deficit kind (and condition): mean over seeds, band = min-max; the no-deficit baseline
    as a horizontal line."""
    cells = removal_table(runs)
    curves: dict[tuple[str, str], list[Cell]] = defaultdict(list)
    for cell in cells:
        curves[(cell.kind, cell.condition)].append(cell)
    if not any(len(c) >= 2 for c in curves.values()):
        raise NoData("needs completed runs of one deficit kind with onset 0 at two or more removal epochs")
    words = condition_words(runs)
    conditions = sorted({cond for _, cond in curves} | set(baselines(runs)))
    style = {cond: LINESTYLES[i % len(LINESTYLES)] for i, cond in enumerate(conditions)}

    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot()
    for (kind, cond), group in sorted(curves.items(), key=lambda item: (_colour(item[0][0]), item[0][1])):
        x = [c.x for c in group]
        # Lines above every band (zorder), bands light: a curve inside another's band stays visible.
        ax.plot(x, [100 * c.error.mean for c in group], marker="o", color=_colour(kind), ls=style[cond], zorder=3,
                label=_with_condition(f"{kind_words(kind)} ({runs_count([c.error.n for c in group])})", words.get(cond, cond)))
        if any(c.error.n > 1 for c in group):
            ax.fill_between(x, [100 * c.error.low for c in group], [100 * c.error.high for c in group],
                            color=_colour(kind), alpha=0.12, lw=0, zorder=1)
    for cond, stat in baselines(runs).items():
        if ("none", cond) in curves:  # the matched controls are drawn as their own curve
            continue
        ax.axhline(100 * stat.mean, color="black", ls=style[cond], lw=1,
                   label=_with_condition(f"{kind_words('none')} ({runs_count(stat.n)})", words.get(cond, cond)))
        if stat.n > 1:
            ax.axhspan(100 * stat.low, 100 * stat.high, color="black", alpha=0.07)
    kinds = {kind for kind, _ in curves} - {"none"}
    paper = " (cf. Achille et al. 2019, Fig. 1)" if kinds == {"blur"} else (
        " (cf. Achille et al. 2019, Fig. 2)" if len(kinds) > 1 else "")
    _final_error_axes(ax, "deficit removal epoch = onset + length (epochs)",
                      f"Final test error vs deficit removal epoch{paper}" + _schedule_line(runs))
    return fig


def _final_error_axes(ax: Axes, xlabel: str, title: str) -> None:
    """Labels, whole-number ticks, grid and the seed-band legend of a final-test-error figure."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel("final test error (%)")
    ax.set_title(title, fontsize=11)
    integer_ticks(ax)
    ax.grid(alpha=0.3)
    ax.legend(title=SEED_BAND, fontsize=8, title_fontsize=8)


def error_vs_depth(runs: Sequence[Run]) -> Figure:
    """Final test error against the number of hidden layers, one line per deficit kind (no deficit in
    black): mean over seeds, each seed a dot, band = min-max (Achille et al.: a deeper net has the
    stronger critical period, so the lines part with depth)."""
    errors: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in plotted_runs(runs):
        if (depth := hidden_layers(run)) is not None:
            errors[run.deficit or "none"][depth].append(100 * run.test_error)
    if len({d for by_depth in errors.values() for d in by_depth}) < 2:
        raise NoData("needs completed MLP runs of two or more depths (model.widths of different lengths)")
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.add_subplot()
    for kind, by_depth in sorted(errors.items(), key=lambda item: item[0] != "none"):
        depths = sorted(by_depth)
        values = [by_depth[d] for d in depths]
        ax.plot(depths, [np.mean(v) for v in values], marker="o", color=_colour(kind), zorder=3,
                label=f"{kind_words(kind)} ({runs_count([len(v) for v in values])})")
        ax.fill_between(depths, [min(v) for v in values], [max(v) for v in values], color=_colour(kind), alpha=0.12, lw=0)
        for d, v in zip(depths, values):
            ax.scatter([d] * len(v), v, color=_colour(kind), s=10, alpha=0.6, zorder=2)
    lengths = sorted({r.length for r in plotted_runs(runs) if r.deficit not in (None, "none") and r.length})
    removed = f", deficit removed at epoch {', '.join(map(str, lengths))}" if lengths else ""
    _final_error_axes(ax, "hidden layers", f"Final test error vs depth{removed} (cf. Achille et al. 2019)" + _schedule_line(runs))
    return fig


# -- 2. sensitivity against onset (Achille et al. Fig. 4) ------------------------------------------------


def _draw_sensitivity(ax: Axes, cells: Sequence[Cell], words: dict[str, str]) -> None:
    curves: dict[tuple[str, int, str], list[Cell]] = defaultdict(list)
    for cell in cells:
        curves[(cell.kind, cell.length, cell.condition)].append(cell)
    conditions = sorted({cond for *_, cond in curves})
    lengths = sorted({length for _, length, _ in curves})
    for (kind, length, cond), group in sorted(curves.items()):
        x = [c.x for c in group]
        ls = LINESTYLES[(conditions.index(cond) + lengths.index(length)) % len(LINESTYLES)]
        label = f"{kind_words(kind)}, {length}-epoch window ({runs_count([c.sensitivity.n for c in group])})"
        ax.plot(x, [100 * c.sensitivity.mean for c in group], marker="o", color=_colour(kind), ls=ls,
                label=_with_condition(label, words.get(cond, cond)))
        if any(c.sensitivity.n > 1 for c in group):
            ax.fill_between(x, [100 * c.sensitivity.low for c in group], [100 * c.sensitivity.high for c in group],
                            color=_colour(kind), alpha=0.2)
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_xlabel("deficit onset (epoch)")
    ax.set_ylabel("final test error - no-deficit error (percentage points)", fontsize=9)
    integer_ticks(ax)
    ax.grid(alpha=0.3)
    ax.legend(title=SEED_BAND, fontsize=8, title_fontsize=8)


def _sensitivity_cells(runs: Sequence[Run]) -> list[Cell]:
    cells = sensitivity_table(runs)
    if not cells:
        raise NoData(
            "needs completed runs with a deficit window of one length > 0 at two or more onsets, "
            "and a baseline (deficit none or length 0) of the same condition"
        )
    return cells


def sensitivity_vs_onset(runs: Sequence[Run]) -> Figure:
    """Sensitivity (final test error minus the no-deficit error, in percentage points) against the
    onset of a deficit window of fixed length; mean over seeds, band = min-max."""
    cells = _sensitivity_cells(runs)
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot()
    _draw_sensitivity(ax, cells, condition_words(runs))
    ax.set_title("Sensitivity to a deficit window vs its onset (cf. Achille et al. 2019, Fig. 4)" + _schedule_line(runs),
                 fontsize=11)
    return fig


# -- 3. Fisher trace over training, beside the sensitivity (Achille et al. Fig. 4) ----------------------


def _fisher_runs(runs: Sequence[Run]) -> list[Run]:
    return [r for r in plotted_runs(runs) if len(series(r.metrics, mn.FISHER_TRACE)) >= 2]


def fisher_trace(runs: Sequence[Run]) -> Figure:
    """``fisher/trace`` against epochs completed, one line per setting (mean over seeds, band =
    min-max, deficit window shaded); beside it the sensitivity curve when the sweep has window runs
    (then it is Achille et al.'s Fig. 4)."""
    with_fisher = _fisher_runs(runs)
    if not with_fisher:
        raise NoData(f"no completed run logged {mn.FISHER_TRACE} at two or more points (train with probes=fisher or probes=full)")
    try:
        cells = _sensitivity_cells(runs)
    except NoData:
        cells = []
    groups = group_runs(with_fisher)
    fig = Figure(figsize=(14 if cells else 8, 5), layout="constrained")
    grid = fig.add_gridspec(1, 2 if cells else 1)
    draw_metrics(fig, grid[0], groups, [mn.FISHER_TRACE], "Fisher information trace during training" if cells else None)
    if cells:
        right = fig.add_subplot(grid[1])
        _draw_sensitivity(right, cells, condition_words(runs))
        right.set_title("Sensitivity to a deficit window vs its onset" + _schedule_line(runs), fontsize=10)
        fig.suptitle("Fisher information and sensitivity to a deficit (cf. Achille et al. 2019, Fig. 4)")
    else:
        keys = varying_settings(with_fisher)
        fig.suptitle(f"Fisher information trace during training{by_words(keys, any(not g.is_baseline for g in groups))}")
    return fig


# -- 4. per-layer share of the Fisher trace ----------------------------------------------------------------


def layer_shares(run: Run) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(x, {layer: share of tr F})`` for one run: the logged ``fisher/share/<layer>``, else the
    per-layer traces ``fisher/trace/<layer>`` divided by ``fisher/trace``."""
    anchors = epoch_anchors(run.metrics)
    share_keys = keys_with_prefix(run.metrics, mn.fisher_layer_share(""))
    if share_keys:
        curves = {k.removeprefix(mn.fisher_layer_share("")): series(run.metrics, k, anchors) for k in share_keys}
    else:
        total = series(run.metrics, mn.FISHER_TRACE, anchors)
        curves = {}
        for key in keys_with_prefix(run.metrics, mn.fisher_layer_trace("")):
            layer = series(run.metrics, key, anchors)
            curves[key.removeprefix(mn.fisher_layer_trace(""))] = Series(layer.x, layer.y / np.interp(layer.x, total.x, total.y), layer.epoch)
    if not curves:
        return np.empty(0), {}
    x = max((c.x for c in curves.values()), key=len)
    return x, {layer: np.interp(x, c.x, c.y) for layer, c in curves.items() if len(c)}


def mean_shares(group: Group) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    """The group's per-layer shares averaged over its runs (on the union of their x): ``(x, shares, n runs)``."""
    per_run = [layer_shares(r) for r in group.runs]
    per_run = [(x, s) for x, s in per_run if len(x) >= 2]
    layers = list(dict.fromkeys(layer for _, s in per_run for layer in s))
    bands = {layer: mean_over_runs([Series(x, s[layer], np.zeros(len(x), int)) for x, s in per_run if layer in s]) for layer in layers}
    x = max((b.x for b in bands.values()), key=len)
    return x, {layer: np.interp(x, b.x, b.mean) for layer, b in bands.items()}, len(per_run)


def fisher_share(runs: Sequence[Run], max_panels: int = 4) -> Figure:
    """Per-layer share of the Fisher trace against epochs completed (stacked areas, mean over
    seeds), one panel per setting without deficit (up to ``max_panels``), or else the first setting
    with per-layer Fisher data (its deficit window between dashed lines)."""
    candidates = [r for r in plotted_runs(runs) if len(layer_shares(r)[0]) >= 2]
    if not candidates:
        raise NoData("no completed run logged per-layer Fisher traces (fisher/share/<layer> or fisher/trace/<layer>)")
    groups = group_runs(candidates)
    chosen = [g for g in groups if g.is_baseline][:max_panels]
    which = "runs without deficit" if chosen else "no run without deficit has it"
    chosen = chosen or groups[:1]
    fig = Figure(figsize=(6.5 * len(chosen), 4.6), layout="constrained")
    grid = fig.add_gridspec(1, len(chosen))
    for i, group in enumerate(chosen):
        x, shares, n = mean_shares(group)
        axes = epoch_axes(fig, grid[i], [x])
        for ax in axes.all:
            ax.stackplot(x, *shares.values(), labels=list(shares) if ax is axes.main else ["_nolegend_"] * len(shares), alpha=0.85)
            ax.set_ylim(0, 1)
        for edge in group.window or ():  # shading would vanish on the stacked areas: dashed edges instead
            for ax in axes.all:
                ax.axvline(edge, color="black", ls="--", lw=1, label="_nolegend_")
        axes.left.set_ylabel("share of tr F (fraction)")
        axes.main.set_title(f"{group.label} ({runs_count(n)})", fontsize=9)
        axes.main.legend(title="layer", fontsize=7, title_fontsize=7, loc="upper right")
    fig.suptitle(f"Per-layer share of the Fisher information trace ({which})")
    return fig


# -- 5. break-even metrics by learning rate / batch size (Jastrzebski et al. 2020) ----------------------


BREAK_EVEN_KEYS = (mn.LAMBDA_H1, mn.LAMBDA_K1, mn.TRACE_K, mn.COND_K, mn.TRACE_K_RATIO)


def _two_over_lr(axes: EpochAxes, groups: Sequence[Group]) -> None:
    """Dashed horizontals at 2/lr per learning rate (the stability edge of full-batch gradient
    descent: lambda_H^1 of SGD settles at or below it). A line far above the data (more than 3x its
    top) is left off the axis and its legend entry says so."""
    lrs: dict[float, str] = {}
    for group in groups:
        for run in group.runs:
            if run.lr:
                lrs.setdefault(run.lr, group.colour if len({r.lr for g in groups for r in g.runs}) > 1 else "black")
    if not lrs:
        return
    bottom, bands_top = axes.left.get_ylim()  # autoscaled to the data, before the lines are added
    levels = {lr: 2.0 / lr for lr in lrs}
    shown = [v for v in levels.values() if v <= 3 * bands_top] if bands_top > 0 else []
    top = max([bands_top, *(1.08 * v for v in shown)])
    for lr, level in sorted(levels.items()):
        label = f"2/lr = {level:.3g} (learning rate {value_words(lr)})"
        if level > top:
            label += ", above the axis"
        for ax in axes.all:
            ax.axhline(level, color=lrs[lr], ls="--", lw=1, label=label if ax is axes.main else "_nolegend_")
    axes.left.set_ylim(bottom, top)
    previous = axes.main.get_legend()
    legend(axes.main, fontsize=7, title=previous.get_title().get_text() if previous else None, title_fontsize=7)


def break_even(runs: Sequence[Run], threshold: float = be.PAPER_TRAIN_ACC_THRESHOLD) -> Figure:
    """``lambda_H^1``, ``lambda_K^1``, ``tr K``, ``lambda_K^*/lambda_K^1`` and ``tr K/lambda_K^1``
    (those logged) and the training accuracy against epochs completed, one line per setting (learning
    rate, batch size, ...): mean over seeds, band = min-max. Dotted verticals: the end of the first
    epoch in which each run's training accuracy reaches ``threshold`` (a diagnostic as in the paper,
    not a cut-off); dashed horizontals on the lambda_H^1 panel: 2/lr per learning rate."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold={threshold}: the training accuracy of the vertical line must be a fraction in (0, 1]")
    candidates = [r for r in plotted_runs(runs) if any(r.has(k) for k in BREAK_EVEN_KEYS)]
    if not candidates:
        raise NoData("no completed run logged break-even metrics (train with probes=break_even or probes=full)")
    keys = [k for k in BREAK_EVEN_KEYS if any(r.has(k) for r in candidates)]
    if any(r.has(mn.TRAIN_ACC) for r in candidates):
        keys.append(mn.TRAIN_ACC)
    groups = group_runs(candidates)
    crossings = {
        g.label: sorted({first_reaching(series(r.metrics, mn.TRAIN_ACC), threshold) for r in g.runs} - {None})
        for g in groups
    }
    columns = 2 if len(keys) > 1 else 1
    rows = (len(keys) + columns - 1) // columns
    fig = Figure(figsize=(7 * columns, 4.2 * rows), layout="constrained")
    grid = fig.add_gridspec(rows, columns)
    for i, key in enumerate(keys):
        scale = 100.0 if key == mn.TRAIN_ACC else 1.0
        early = has_early_probes(series(r.metrics, key).x for r in candidates)  # no empty early panel
        axes = draw_metrics(fig, grid[i // columns, i % columns], groups, [key], metric_label(key), scale=scale, early=early)
        if key in PEAK_KEYS:
            _mark_peaks(axes)
        if key != mn.TRAIN_ACC:
            _clip_spikes(axes)
        for group in groups:
            for x in crossings[group.label]:
                for ax in axes.all:
                    ax.axvline(x, color=group.colour, ls=":", lw=1.2)
        if key == mn.TRAIN_ACC:
            _threshold_panel(axes, groups, threshold)
        if key == mn.LAMBDA_H1:
            _two_over_lr(axes, groups)
    varied = varying_settings(candidates)
    fig.suptitle(
        f"Break-even point: curvature and gradient noise{by_words(varied, any(not g.is_baseline for g in groups))} "
        f"(cf. Jastrzebski et al. 2020, Figs. 1-2)\n"
        f"dotted: end of the first epoch with training accuracy $\\geq$ {value_words(100 * threshold)}% (per run)",
        fontsize=11,
    )
    return fig


# The maxima the break-even claims judge (Jastrzebski et al. 2020: the peaks of lambda_H^1 and lambda_K^1).
PEAK_KEYS = (mn.LAMBDA_H1, mn.LAMBDA_K1)
SPIKE_FACTOR = 3.0  # a point this many times the next highest is a spike: the axis is cut below it


def _curves(axes) -> list:
    """The data lines of a panel (not the reference lines, which have two points)."""
    return [line for ax in axes.all for line in ax.get_lines() if len(line.get_ydata()) > 2]


def _mark_peaks(axes) -> None:
    """A triangle at the maximum of every curve (mean over seeds; one per curve, whichever of the
    early and main panels holds it), in the curve's colour."""
    peaks: dict[tuple, tuple[float, float, object]] = {}
    for line in _curves(axes):
        x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
        if not np.isfinite(y).any():
            continue
        top = int(np.nanargmax(y))
        key = (str(line.get_color()), line.get_linestyle())
        if key not in peaks or y[top] > peaks[key][1]:
            peaks[key] = (x[top], y[top], line)
    for x, y, line in peaks.values():
        line.axes.plot([x], [y], marker="v", ms=8, color=line.get_color(), ls="none", label="_nolegend_")
    if peaks:
        axes.main.text(0.99, 0.99, "\u25bc peak of each curve", transform=axes.main.transAxes, ha="right", va="top",
                       fontsize=7)


def _clip_spikes(axes) -> None:
    """Cut the y axis above the curves' bulk when a single spike would flatten them, and say so."""
    values = np.concatenate([np.asarray(line.get_ydata(), float) for line in _curves(axes)] or [np.zeros(0)])
    values = values[np.isfinite(values)]
    if len(values) < 5:
        return
    bulk, highest = np.sort(values)[-2:].astype(float)  # one point far above the next highest: a spike
    if bulk > 0 and highest > SPIKE_FACTOR * bulk:
        for ax in axes.all:
            ax.set_ylim(top=1.5 * bulk)
        axes.main.text(0.01, 0.99, f"axis cut: a spike reaches {value_words(round(highest, 3))}", transform=axes.main.transAxes,
                       ha="left", va="top", fontsize=7)


def _threshold_panel(axes, groups, threshold: float) -> None:
    """The training-accuracy panel of :func:`break_even`: the threshold line, and the settings of
    which some run never reaches it (crossings are per epoch, shared by runs that cross together)."""
    axes.left.set_ylabel("training accuracy (%)", fontsize=9)
    for ax in axes.all:
        ax.axhline(100 * threshold, color="grey", ls="-.", lw=1,
                   label=f"threshold {value_words(100 * threshold)}%" if ax is axes.main else "_nolegend_")
    never = [g.label for g in groups
             if any(first_reaching(series(r.metrics, mn.TRAIN_ACC), threshold) is None for r in g.runs)]
    if never:
        axes.main.text(0.01, 0.01, "never reach it: " + "; ".join(never), transform=axes.main.transAxes, fontsize=7)
    legend(axes.main, fontsize=7)


FIGURES: dict[str, Callable[[Sequence[Run]], Figure]] = {
    "error_vs_removal.png": error_vs_removal,
    "error_vs_depth.png": error_vs_depth,
    "sensitivity_vs_onset.png": sensitivity_vs_onset,
    "fisher_trace.png": fisher_trace,
    "fisher_share.png": fisher_share,
    "break_even.png": break_even,
    **probe_figures.FIGURES,
}


def _save(fig: Figure, path: Path, **options) -> Path:
    return save(fig, path, **options)


def draw_all(runs: Sequence[Run], out_dir: Path, dpi: int = PNG_DPI,
             vector: str | None = DEFAULT_VECTOR) -> tuple[dict[str, Path], dict[str, str]]:
    """Every figure the sweep has data for: ``(drawn {name: PNG path}, skipped {name: reason})``, each
    PNG at ``dpi`` with its ``vector`` file (pdf, svg, or ``None``) beside it. A figure that was drawn
    by an earlier analysis but is now skipped is deleted, vector files too, so the folder never shows
    a stale figure."""
    drawn, skipped = {}, {}
    for name, draw in FIGURES.items():
        png = out_dir / name
        try:
            drawn[name] = _save(draw(runs), png, dpi=dpi, vector=vector)
        except NoData as reason:
            skipped[name] = str(reason)
            png.unlink(missing_ok=True)
        for other in VECTOR_FORMATS:  # stale: the figure is skipped now, or saved in another format
            if name not in drawn or other != vector:
                png.with_suffix(f".{other}").unlink(missing_ok=True)
    return drawn, skipped
