"""Figures of the representation and gradient-geometry probes: stiffness (Fort et al. 2019), the
frequency principle (Xu et al. 2019) and linear CKA (Kornblith et al. 2019). Same conventions as
``figures``: completed runs only, a line per setting (mean over seeds, band = min-max), a
``Figure`` returned, :class:`NoData` with the reason when the sweep lacks the data.

* stiffness: mean over pairs of probe examples i != j of cos(g_i, g_j) (cosine stiffness) and of
  sign(g_i . g_j) (sign stiffness), pairs of the same class and of different classes apart;
* frequency: relative errors e_low, e_high of the outputs' low- and high-frequency parts
  (Gaussian filtering on the probe set);
* CKA: linear CKA of each layer's representation now vs at the initial weights (``cka/<layer>/vs_init``);
  and, from saved representations, of a run with a deficit vs the run without it (same seed and
  setting) at the latest epoch both saved.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np
from matplotlib.figure import Figure

from critical_periods.record import metric_names as mn
from critical_periods.analysis.curves import keys_with_prefix, mean_over_runs, series
from critical_periods.analysis.labels import SEED_BAND, has_deficit, runs_count
from critical_periods.analysis.plotting import NoData, by_words, draw_metrics, epoch_axes, group_runs
from critical_periods.analysis.runs import Run, condition, varying_settings
from critical_periods.analysis.tables import plotted_runs
from critical_periods.probes.representation_probes import cka_between_runs
from critical_periods.record.layout import REPRESENTATIONS_DIR
from critical_periods.probes.representations import saved_epochs

STIFFNESS_KEYS = (mn.STIFFNESS_COS_SAME, mn.STIFFNESS_COS_DIFF, mn.STIFFNESS_SIGN_SAME, mn.STIFFNESS_SIGN_DIFF)
FREQUENCY_KEYS = (mn.FREQUENCY_ERROR_LOW, mn.FREQUENCY_ERROR_HIGH)
_CKA_KEY = re.compile("^{}$".format(re.escape(mn.cka_vs_init("LAYER")).replace("LAYER", "(.+)")))  # built from the one name


def _with(runs: Sequence[Run], keys: Sequence[str], why: str) -> list[Run]:
    found = [r for r in plotted_runs(runs) if any(r.has(k) for k in keys)]
    if not found:
        raise NoData(why)
    return found


def _title(what: str, runs: Sequence[Run]) -> str:
    groups = group_runs(runs)
    return what + by_words(varying_settings(runs), any(not g.is_baseline for g in groups))


# -- stiffness ---------------------------------------------------------------------------------------------


def stiffness(runs: Sequence[Run]) -> Figure:
    """Cosine stiffness (left) and sign stiffness (right) against epochs completed: pairs of the
    same class solid, of different classes dashed."""
    found = _with(runs, STIFFNESS_KEYS, "no completed run logged stiffness/* (train with the stiffness probe)")
    groups = group_runs(found)
    fig = Figure(figsize=(14, 5), layout="constrained")
    grid = fig.add_gridspec(1, 2)
    names = ("same class", "different classes")
    draw_metrics(fig, grid[0], groups, STIFFNESS_KEYS[:2], "cosine stiffness: mean cos($g_i$, $g_j$)", names,
                 "cosine stiffness")
    draw_metrics(fig, grid[1], groups, STIFFNESS_KEYS[2:], r"sign stiffness: mean sign($g_i \cdot g_j$)", names,
                 "sign stiffness")
    fig.suptitle(_title("Stiffness between per-example gradients (cf. Fort et al. 2019)", found))
    return fig


# -- frequency principle -------------------------------------------------------------------------------------


def frequency(runs: Sequence[Run]) -> Figure:
    """Relative error of the low-frequency (solid) and high-frequency (dashed) part of the network's
    outputs against epochs completed: the frequency principle expects the low part to fall first."""
    found = _with(runs, FREQUENCY_KEYS, "no completed run logged frequency/* (train with the frequency probe)")
    fig = Figure(figsize=(8.5, 5), layout="constrained")
    draw_metrics(fig, fig.add_gridspec(1, 1)[0], group_runs(found), FREQUENCY_KEYS, None,
                 ("low frequencies $e_{low}$", "high frequencies $e_{high}$"), "relative error (fraction)")
    fig.suptitle(_title("Frequency principle: low vs high frequency error (cf. Xu et al. 2019)", found))
    return fig


# -- CKA with the initial representation, layer x epoch ----------------------------------------------------


def cka_layers(run: Run) -> list[str]:
    """The layers with ``cka/<layer>/vs_init`` in the run's metrics, in order of first appearance."""
    return [m.group(1) for k in keys_with_prefix(run.metrics, "cka/") if (m := _CKA_KEY.match(k))]


def _edges(x: np.ndarray) -> np.ndarray:
    """Cell edges around the x values (midpoints; the outer cells as wide as their neighbours)."""
    if len(x) == 1:
        return np.array([x[0] - 0.5, x[0] + 0.5])
    mid = (x[1:] + x[:-1]) / 2
    return np.concatenate([[x[0] - (mid[0] - x[0])], mid, [x[-1] + (x[-1] - mid[-1])]])


def cka_heatmap(runs: Sequence[Run]) -> Figure:
    """Linear CKA of each layer (rows, input side on top) with itself at the initial weights,
    against epochs completed (columns): the mean over the seeds of the runs without deficit (else
    of the first setting)."""
    found = [r for r in plotted_runs(runs) if cka_layers(r)]
    if not found:
        raise NoData("no completed run logged cka/<layer>/vs_init (train with the CKA probe)")
    groups = group_runs(found)
    group = next((g for g in groups if g.is_baseline), groups[0])
    layers = list(dict.fromkeys(layer for r in group.runs for layer in cka_layers(r)))
    bands = {layer: mean_over_runs([series(r.metrics, mn.cka_vs_init(layer)) for r in group.runs]) for layer in layers}
    x = np.unique(np.concatenate([b.x for b in bands.values()]))
    grid = np.array([np.interp(x, b.x, b.mean, left=np.nan, right=np.nan) for b in bands.values()])
    n = max(int(b.n.max()) for b in bands.values())

    fig = Figure(figsize=(9, 1.2 + 0.45 * len(layers)), layout="constrained")
    axes = epoch_axes(fig, fig.add_gridspec(1, 1)[0], [x])
    edges = _edges(x)
    for ax in axes.all:
        mesh = ax.pcolormesh(edges, np.arange(len(layers) + 1), grid, cmap="viridis", vmin=0.0, vmax=1.0)
    axes.main.set_xlim(max(1.0, edges[0]) if axes.early is not None else edges[0], edges[-1])
    if axes.early is not None:
        axes.early.set_xlim(edges[0], 1)
    axes.left.set_yticks(np.arange(len(layers)) + 0.5, layers)
    axes.left.invert_yaxis()
    axes.left.set_ylabel("layer")
    fig.colorbar(mesh, ax=axes.all, label="linear CKA with the initial weights")
    fig.suptitle(f"Representation change from initialisation, linear CKA per layer ({group.label}, {runs_count(n)})",
                 fontsize=11)
    return fig


# -- CKA between the run with a deficit and the run without, per layer -------------------------------------


def cka_deficit_vs_clean(runs: Sequence[Run]) -> Figure:
    """Linear CKA (debiased) per layer between the representations of a run with a deficit and of
    the run without deficit of the same seed and setting, at the latest epoch both saved (the end of
    training when the clean run is the matched control of the same length): 1 = the deficit left no
    trace in that layer's representation of the probe set. A line per deficit setting: mean over
    seeds, band = min-max."""
    done = [r for r in plotted_runs(runs) if saved_epochs(r.path)]
    if not done:
        raise NoData(f"no completed run saved representations (<run>/{REPRESENTATIONS_DIR}/epoch_<E>.npz)")
    keys = varying_settings(done)
    clean = {(condition(r, keys), r.seed): r for r in done if not has_deficit(r)}
    pairs = [(r, clean[(condition(r, keys), r.seed)]) for r in done
             if has_deficit(r) and (condition(r, keys), r.seed) in clean]
    if not pairs:
        raise NoData("needs a run with a deficit and a run without deficit of the same seed and setting, "
                     "both with saved representations")

    values: dict[str, dict[str, float]] = {}  # job -> layer -> CKA
    layers: list[str] = []
    for run, base in pairs:
        common = sorted(set(saved_epochs(run.path)) & set(saved_epochs(base.path)))
        if not common:
            continue
        values[run.job] = cka_between_runs(run.path, base.path, common[-1])
        layers += [layer for layer in values[run.job] if layer not in layers]
    if not layers:
        raise NoData("the paired runs share no layer with the same number of probe examples")

    fig = Figure(figsize=(max(6.5, 1.1 * len(layers) + 3), 4.8), layout="constrained")
    ax = fig.add_subplot()
    index = np.arange(len(layers))
    spread = False
    for group in group_runs([run for run, _ in pairs]):
        per_layer = [[values[r.job][layer] for r in group.runs if layer in values[r.job]] for layer in layers]
        mean = np.array([np.mean(v) if v else np.nan for v in per_layer])
        ax.plot(index, mean, marker="o", color=group.colour, label=f"{group.label} ({runs_count(max(map(len, per_layer)))})")
        if max(map(len, per_layer)) > 1:
            spread = True
            ax.fill_between(index, [min(v) if v else np.nan for v in per_layer], [max(v) if v else np.nan for v in per_layer],
                            color=group.colour, alpha=0.2)
    ax.axhline(1.0, color="black", lw=0.8, ls=":")
    ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.05)  # the whole scale: 0 (nothing shared) to 1 (the same)
    ax.set_xticks(index, layers)
    ax.set_xlabel("layer (input side first)")
    ax.set_ylabel("linear CKA (debiased) with the run without deficit")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title=SEED_BAND if spread else None, title_fontsize=8)
    fig.suptitle("Representations at the end of training: deficit vs no deficit (same seed), per layer", fontsize=11)
    return fig


FIGURES: dict[str, Callable[[Sequence[Run]], Figure]] = {
    "stiffness.png": stiffness,
    "frequency.png": frequency,
    "cka_vs_init.png": cka_heatmap,
    "cka_deficit_vs_clean.png": cka_deficit_vs_clean,
}
