"""The cross-seed study's figures (Kornblith et al. 2019 Fig. 3-style layer x layer panels, and
matching accuracy / cross-seed CKA against width and depth), drawn from
:class:`~critical_periods.analysis.cross_seed.CrossSeed` results. Bands: the 2.5-97.5 percentiles of
the per-seed values (each seed's mean over its pairs), lines: their mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from critical_periods.analysis.cross_seed import CrossSeed, least_squares_slope
from critical_periods.analysis.plotting import save

INDEX_LABELS = {"linear_cka": "linear CKA", "debiased_cka": "debiased CKA", "mean_cca": "mean CCA ($R^2_{CCA}$)"}


def _band(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, low, high) over the first axis (seeds)."""
    return values.mean(0), np.percentile(values, 2.5, axis=0), np.percentile(values, 97.5, axis=0)


def layer_panels(measured: Mapping[str, Mapping[str, CrossSeed]], keys: list[str]) -> Figure:
    """Per architecture (rows) and index (columns), the mean over seed pairs of S_ab[i, j]."""
    indices = list(INDEX_LABELS)
    fig = Figure(figsize=(4.2 * len(indices), 3.8 * len(keys)), layout="constrained")
    axes = fig.subplots(len(keys), len(indices), squeeze=False)
    for row, key in enumerate(keys):
        for col, name in enumerate(indices):
            cs = measured[key][name]
            ax = axes[row][col]
            image = ax.imshow(cs.mean_matrix(), vmin=0, vmax=1, cmap="magma", origin="lower")
            ticks = range(len(cs.layers))
            ax.set_xticks(ticks, [str(i + 1) for i in ticks])
            ax.set_yticks(ticks, [str(i + 1) for i in ticks])
            accuracy = np.mean(list(cs.matching().values()))
            ax.set_title(f"{key}: {INDEX_LABELS[name]}\nmatching accuracy {accuracy:.2f} ({len(cs.seeds)} seeds)")
            ax.set_xlabel("layer of net B")
            ax.set_ylabel("layer of net A")
            fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def width_figure(measured: Mapping[str, Mapping[str, CrossSeed]]) -> Figure:
    """Left: matching accuracy against width per index; right: cross-seed debiased CKA per hidden
    layer, one line per width."""
    widths = sorted(int(k.split("-")[1]) for k in measured if k.startswith("mlp-"))
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    for name, label in INDEX_LABELS.items():
        per_width = [np.array(list(measured[f"mlp-{w}"][name].matching().values())) for w in widths]
        mean = [v.mean() for v in per_width]
        low = [np.percentile(v, 2.5) for v in per_width]
        high = [np.percentile(v, 97.5) for v in per_width]
        left.plot(widths, mean, marker="o", label=label)
        left.fill_between(widths, low, high, alpha=0.2)
    left.set_xscale("log", base=2)
    left.set_xlabel("hidden width (6 hidden layers)")
    left.set_ylabel("layer matching accuracy")
    left.set_ylim(-0.02, 1.02)
    left.legend()
    for w in widths:
        diagonal = np.array(list(measured[f"mlp-{w}"]["debiased_cka"].diagonal().values()))
        mean, low, high = _band(diagonal)
        x = np.arange(1, len(mean) + 1)
        right.plot(x, mean, marker="o", label=f"width {w}")
        right.fill_between(x, low, high, alpha=0.2)
    right.set_xlabel("hidden layer")
    right.set_ylabel("cross-seed debiased CKA (same layer)")
    right.legend()
    return fig


def depth_figure(cs: CrossSeed, title: str) -> Figure:
    """Cross-instance debiased CKA of each hidden layer (mean, band over instances) and the fitted line."""
    profiles = np.array(list(cs.diagonal().values()))
    mean, low, high = _band(profiles)
    x = np.arange(1, len(mean) + 1)
    slope = least_squares_slope(mean)
    fig = Figure(figsize=(5.5, 4.2), layout="constrained")
    ax = fig.subplots()
    ax.plot(x, mean, marker="o", label=f"mean over {len(profiles)} instances")
    ax.fill_between(x, low, high, alpha=0.25)
    ax.plot(x, mean.mean() + slope * (x - x.mean()), "--", label=f"least squares, slope {slope:+.3f} per layer")
    ax.set_xlabel("hidden layer")
    ax.set_ylabel("cross-instance debiased CKA")
    ax.set_title(title)
    ax.legend()
    return fig


def draw_all(measured: Mapping[str, Mapping[str, CrossSeed]], out_dir: Path, deep_width: int) -> list[Path]:
    """The figures the claims name (``layer_cka``, ``width``, ``depth``; .png and .pdf) that the
    measured architectures allow."""
    out_dir = Path(out_dir)
    paths = []
    keys = [k for k in (f"mlp-{deep_width}", "conv1d") if k in measured]
    if keys:
        paths.append(save(layer_panels(measured, keys), out_dir / "layer_cka.png"))
    if sum(k.startswith("mlp-") for k in measured) >= 2:
        paths.append(save(width_figure(measured), out_dir / "width.png"))
    if f"mlp-{deep_width}" in measured:
        cs = measured[f"mlp-{deep_width}"]["debiased_cka"]
        paths.append(save(depth_figure(cs, f"MLP, 6 hidden layers of {deep_width}"), out_dir / "depth.png"))
    return paths
