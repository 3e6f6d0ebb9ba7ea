"""What every figure shares: the runs grouped into settings (mean over seeds), the epoch axis, and
the drawing of a mean with its band.

The epoch axis is linear with integer ticks. When probes were logged at early global steps (inside
the first epoch, at fractional epochs; see ``curves``), the first epoch gets a panel of its own on
the left with a symlog axis (linear from 0 to the decade below the first early probe, log above),
so the log-spaced early probes are spread out instead of piled up at 0.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.gridspec import SubplotSpec
from matplotlib.legend import Legend
from matplotlib.legend_handler import HandlerTuple
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullLocator

from critical_periods.vocabulary import DeficitKind
from critical_periods.analysis.curves import Band, mean_over_runs, series
from critical_periods.analysis.labels import EPOCHS_AXIS, SEED_BAND, axis_label, has_deficit, key_words, run_words, runs_count
from critical_periods.analysis.runs import Run, flatten, varying_settings

KIND_ORDER = tuple(DeficitKind)  # none, blur, noise, vertical flip, label permutation
BASELINE_COLOUR = "black"
WINDOW_LABEL = "deficit window (shaded)"
WINDOW_ALPHA = 0.08
# Figures: a PNG at PNG_DPI (--dpi 300 for a paper) and, beside it, the same figure as a vector file.
PNG_DPI = 120
VECTOR_FORMATS = ("pdf", "svg")
DEFAULT_VECTOR = "pdf"


class NoData(Exception):
    """The sweep has not the data a figure needs; the message says what is missing."""


# -- settings: the runs that differ only by seed -------------------------------------------------------


@dataclass
class Group:
    """The runs of one setting (they differ only by seed): its label in words, its deficit window
    ``(onset, removal epoch)`` (``None`` without deficit), and its colour."""

    label: str
    runs: list[Run]
    window: tuple[int, int] | None
    colour: str = "C0"
    order: tuple = field(default=(), repr=False)

    @property
    def is_baseline(self) -> bool:
        return self.window is None


def _sortable(value: Any) -> tuple:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value, "")
    return (1, 0, str(value))


def group_runs(runs: Sequence[Run], keys: Sequence[str] | None = None) -> list[Group]:
    """``runs`` grouped by setting: deficit (kind, window; every run without deficit is one
    "no deficit" setting) and the config ``keys`` (default: the keys that vary between the runs,
    apart from seed, deficit and plumbing). Sorted: no deficit first, then by kind, onset, length
    and the keys' values. Colours: black for "no deficit" when there are deficits, else C0, C1..."""
    keys = varying_settings(runs) if keys is None else list(keys)
    with_deficit = any(has_deficit(r) for r in runs)
    by_label: dict[str, Group] = {}
    for run in runs:
        label = run_words(run, keys, with_deficit)
        if label not in by_label:
            window = (run.onset or 0, run.removal_epoch or 0) if has_deficit(run) else None
            kind = run.deficit if has_deficit(run) else "none"
            flat = flatten(run.config)
            order = (
                KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER), kind,
                window or (0, 0), *(_sortable(json.loads(flat[k]) if k in flat else None) for k in keys),
            )
            by_label[label] = Group(label, [], window, order=order)
        by_label[label].runs.append(run)
    groups = sorted(by_label.values(), key=lambda g: g.order)
    colour = 0
    for group in groups:
        if group.is_baseline and with_deficit:
            group.colour = BASELINE_COLOUR
        else:
            group.colour, colour = f"C{colour % 10}", colour + 1
    return groups


# -- the epoch axis -------------------------------------------------------------------------------------


@dataclass
class EpochAxes:
    """One panel against epochs: ``main`` (linear, integer ticks) and, when there are early probes,
    ``early`` on its left (the first epoch, symlog), sharing the y axis."""

    main: Axes
    early: Axes | None = None

    @property
    def all(self) -> list[Axes]:
        return [self.early, self.main] if self.early is not None else [self.main]

    @property
    def left(self) -> Axes:
        return self.all[0]


def has_early_probes(xs: Iterable[np.ndarray]) -> bool:
    """Whether any x (epochs completed) lies strictly inside the first epoch."""
    return any(bool(np.any((x > 0) & (x < 1))) for x in xs)


def integer_ticks(ax: Axes, axis: str = "x") -> None:
    (ax.xaxis if axis == "x" else ax.yaxis).set_major_locator(MaxNLocator(integer=True))


def epoch_axes(fig: Figure, spec: SubplotSpec, xs: Sequence[np.ndarray], early: bool | None = None) -> EpochAxes:
    """The axes of one panel whose x values (epochs completed) are ``xs``: see the module docstring.
    ``early``: whether to give the first epoch its own log panel (default: iff ``xs`` has early
    probes), so that the panels of one figure can be aligned."""
    xs = [np.asarray(x, dtype=float) for x in xs if len(x)]
    end = max((float(x.max()) for x in xs), default=1.0)
    if not (has_early_probes(xs) if early is None else early):
        ax = fig.add_subplot(spec)
        ax.set_xlim(0, max(end, 1.0))
        integer_ticks(ax)
        ax.set_xlabel(EPOCHS_AXIS)
        return EpochAxes(ax)
    inner = spec.subgridspec(1, 2, width_ratios=(1, 3), wspace=0.05)
    early_ax = fig.add_subplot(inner[0])
    main = fig.add_subplot(inner[1], sharey=early_ax)
    first = min((float(x[(x > 0) & (x < 1)].min()) for x in xs if np.any((x > 0) & (x < 1))), default=0.1)
    linthresh = 10.0 ** math.floor(math.log10(first))
    early_ax.set_xscale("symlog", linthresh=linthresh, linscale=0.4)
    early_ax.set_xlim(0, 1)
    # 0, then the decades from the one above the threshold (the threshold's own would crowd 0)
    early_ax.set_xticks([0.0, *(10.0 ** e for e in range(round(math.log10(linthresh)) + 1, 1))])
    early_ax.xaxis.set_minor_locator(NullLocator())
    early_ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    early_ax.set_xlabel("first epoch (log)")
    early_ax.spines["right"].set_linestyle(":")
    main.set_xlim(1, max(end, 2.0))
    integer_ticks(main)
    main.tick_params(labelleft=False)
    main.spines["left"].set_linestyle(":")
    main.set_xlabel(EPOCHS_AXIS)
    return EpochAxes(main, early_ax)


def plot_band(axes: EpochAxes, band: Band, colour: str, label: str, ls: str = "-", marker: str = ".") -> None:
    """The mean over runs as a line (legend entry on the main axis only), min-max as a band."""
    for ax in axes.all:
        ax.plot(band.x, band.mean, color=colour, ls=ls, marker=marker, ms=3,
                label=label if ax is axes.main else "_nolegend_")
        if len(band.n) and band.n.max() > 1:
            ax.fill_between(band.x, band.low, band.high, color=colour, alpha=0.18, lw=0)


def shade_window(axes: EpochAxes, window: tuple[int, int] | None, colour: str) -> None:
    """The deficit window [onset, removal) shaded in the setting's colour; :func:`legend` gives all
    the windows of a panel one entry, with a patch of each window's colour."""
    if window is None or window[1] <= window[0]:
        return
    for ax in axes.all:
        ax.axvspan(*window, color=colour, alpha=WINDOW_ALPHA, lw=0,
                   label=WINDOW_LABEL if ax is axes.main else "_nolegend_")


def legend(ax: Axes, **options: Any) -> Legend:
    """``ax.legend(**options)`` with the deficit windows as one entry, last, whose patches are the
    windows' own colours (one patch per colour, side by side), so the entry matches every window."""
    handles, labels = ax.get_legend_handles_labels()
    windows: dict[tuple, Any] = {}
    kept = [(h, l) for h, l in zip(handles, labels) if l != WINDOW_LABEL]
    for handle, label in zip(handles, labels):
        if label == WINDOW_LABEL:
            windows.setdefault(tuple(handle.get_facecolor()), handle)
    if windows:
        kept.append((tuple(windows.values()), WINDOW_LABEL))
    return ax.legend([h for h, _ in kept], [l for _, l in kept], handler_map={tuple: HandlerTuple(ndivide=None, pad=0)},
                     **options)


def finish(axes: EpochAxes, ylabel: str, title: str | None = None, legend_title: str | None = None) -> None:
    for ax in axes.all:
        ax.grid(alpha=0.3)
    axes.left.set_ylabel(ylabel, fontsize=9)
    if title:
        axes.main.set_title(title, fontsize=10)
    legend(axes.main, fontsize=7, title=legend_title, title_fontsize=7)


LINESTYLES = ("-", "--", ":", "-.")


def draw_metrics(
    fig: Figure,
    spec: SubplotSpec,
    groups: Sequence[Group],
    keys: Sequence[str],
    title: str | None = None,
    names: Sequence[str] | None = None,
    ylabel: str | None = None,
    scale: float = 1.0,
    early: bool | None = None,
) -> EpochAxes:
    """One panel: each metric of ``keys`` against epochs, a line per setting and metric (mean over
    seeds, min-max band; linestyle per metric, named by ``names`` in the legend), each deficit
    window shaded in its setting's colour. With one setting and several metrics the colour tells the
    metrics apart instead. ``scale`` multiplies the values (100 for percent)."""
    names = list(names) if names is not None else [""] * len(keys)
    lines = []
    for group in groups:
        for i, key in enumerate(keys):
            band = mean_over_runs([series(r.metrics, key) for r in group.runs if r.has(key)])
            if len(band.x):
                lines.append((group, i, band))
    axes = epoch_axes(fig, spec, [b.x for *_, b in lines], early)
    windows: dict[tuple[int, int], set[str]] = {}  # window -> colours of the settings drawn with it
    for group, i, band in lines:
        band.mean, band.low, band.high = band.mean * scale, band.low * scale, band.high * scale
        one_group = len(groups) == 1 and len(keys) > 1
        label = ", ".join(p for p in (names[i], None if one_group else group.label) if p)
        plot_band(axes, band, f"C{i}" if one_group else group.colour, f"{label} ({runs_count(band.n)})",
                  ls=LINESTYLES[i % len(LINESTYLES)])
        if group.window is not None:
            windows.setdefault(group.window, set()).add(group.colour)
    # Each window once, after the lines (last in the legend); grey where settings share it.
    for window, colours in sorted(windows.items()):
        shade_window(axes, window, colours.pop() if len(colours) == 1 else "grey")
    spread = any(b.n.max() > 1 for *_, b in lines)
    finish(axes, ylabel or axis_label(keys[0]), title, SEED_BAND if spread else None)
    return axes


def by_words(keys: Sequence[str], with_deficit: bool) -> str:
    """What the lines of a figure differ by, for its title.

    >>> by_words(["optim.lr"], False), by_words(["data.batch_size"], True), by_words([], False)
    (', by learning rate', ', by deficit and batch size', '')
    """
    words = (["deficit"] if with_deficit else []) + [key_words(k) for k in keys]
    return f", by {' and '.join(words)}" if words else ""


def vector_path(png: Path, vector: str | None) -> Path | None:
    """The vector file beside ``png`` (``fisher_trace.pdf`` beside ``fisher_trace.png``), ``None`` for none.

    >>> vector_path(Path("out/fisher_trace.png"), "svg"), vector_path(Path("a.png"), None)
    (PosixPath('out/fisher_trace.svg'), None)
    """
    if vector is None:
        return None
    if vector not in VECTOR_FORMATS:
        raise ValueError(f"vector={vector!r} is not allowed: it must be one of {', '.join(VECTOR_FORMATS)} or None")
    return png.with_suffix(f".{vector}")


def save(fig: Figure, path: Path, dpi: int = PNG_DPI, vector: str | None = DEFAULT_VECTOR) -> Path:
    """The PNG at ``path`` (``dpi`` dots per inch) and the vector file beside it (:func:`vector_path`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    beside = vector_path(path, vector)
    if beside is not None:
        fig.savefig(beside, bbox_inches="tight")
    return path
