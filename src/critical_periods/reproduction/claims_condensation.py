"""The condensation study's claims: Xu et al.'s condensation at small initialisation and Fort et al.'s
dynamical critical length (docs/rules.yaml: xu-condensation-small-init, fort-critical-length), with
their figures drawn into the study's ``analysis/`` folder, where the report picks them up.

Probe series come from :func:`claims.epoch_series`: key -1 is the probe of the initial weights,
key e >= 0 the probe after epoch e + 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from critical_periods.analysis.runs import Run, dig
from critical_periods.analysis.tables import plotted_runs
from critical_periods.record import metric_names as names
from critical_periods.reproduction.claims import CONTROL_SEED_OFFSET, Claim, Judge, epoch_series, shuffled_in_time
from critical_periods.reproduction.statistics import paired_effects, per_seed
from critical_periods.reproduction.studies_condensation import EARLY_EPOCHS

CONDENSATION_RULE = "xu-condensation-small-init"
CRITICAL_LENGTH_RULE = "fort-critical-length"
STANDARD_SCALE = 1.0
CONDENSATION_FIGURE = "condensation"
CRITICAL_LENGTH_FIGURE = "critical_length"


def init_scale_of(run: Run) -> float:
    """The run's ``model.init_scale`` (1.0 when its config predates the option)."""
    value = dig(run.config, "model", "init_scale")
    return float(value) if value is not None else STANDARD_SCALE


def by_scale(runs: Sequence[Run], key: str) -> dict[float, dict[int, Run]]:
    """``{init_scale: {seed: run}}`` of the completed judged-seed runs that logged ``key``."""
    out: dict[float, dict[int, Run]] = {}
    for run in plotted_runs(runs):
        if run.has(key) and run.seed is not None:
            out.setdefault(init_scale_of(run), {})[run.seed] = run
    return {scale: {s: r for s, r in seeds.items() if s < CONTROL_SEED_OFFSET} for scale, seeds in sorted(out.items())}


def early_mean(series: Mapping[int, float], epochs: int = EARLY_EPOCHS) -> float | None:
    """The mean of a probe series over the probes after epochs 1..``epochs`` (keys 0..epochs-1).

    >>> early_mean({-1: 0.0, 0: 0.2, 1: 0.6, 2: 0.9}, epochs=2)
    0.4
    """
    values = [series[e] for e in range(epochs) if e in series]
    return float(np.mean(values)) if len(values) == epochs else None


def at_init(series: Mapping[int, float]) -> float | None:
    return series.get(-1)


def ordering(small: Mapping[int, float | None], mid: Mapping[int, float | None],
             standard: Mapping[int, float | None]) -> dict[int, float | None]:
    """Per seed, min(small - mid, mid - standard): positive when the statistic falls with the scale."""
    out: dict[int, float | None] = {}
    for seed in small:
        a, b, c = small.get(seed), mid.get(seed), standard.get(seed)
        out[seed] = None if None in (a, b, c) else min(a - b, b - c)
    return out


def condensation_claim(judge_: Judge, runs: Sequence[Run], figure: str | None) -> Claim:
    rule = judge_.rules[CONDENSATION_RULE]
    first, second = (p.name for p in rule.parts)
    groups = by_scale(runs, names.CONDENSATION_ALIGNED_FRACTION)
    if len(groups) < 3 or STANDARD_SCALE not in groups:
        return judge_.claim(CONDENSATION_RULE, "mlp", "decaying", {first: per_seed({}), second: per_seed({})}, None,
                            f"Runs at init scales {sorted(groups)}: the rule needs three, one of them {STANDARD_SCALE}.")
    small, mid = sorted(s for s in groups if s != STANDARD_SCALE)[:2]
    series = {scale: {seed: epoch_series(run, names.CONDENSATION_ALIGNED_FRACTION) for seed, run in seeds.items()}
              for scale, seeds in groups.items()}
    early = {scale: {seed: early_mean(s) for seed, s in seeds.items()} for scale, seeds in series.items()}
    start = {scale: {seed: at_init(s) for seed, s in seeds.items()} for scale, seeds in series.items()}
    condition = {first: paired_effects(early[small], early[STANDARD_SCALE]),
                 second: per_seed(ordering(early[small], early[mid], early[STANDARD_SCALE]))}
    control = {first: paired_effects(start[small], start[STANDARD_SCALE]),
               second: per_seed(ordering(start[small], start[mid], start[STANDARD_SCALE]))}
    means = {scale: float(np.mean([v for v in values.values() if v is not None])) for scale, values in early.items()
             if any(v is not None for v in values.values())}
    if runs and figure:
        draw_condensation(sweep_dir_of(groups), series)
    return judge_.claim(
        CONDENSATION_RULE, "mlp", "decaying", condition, control,
        "Mean aligned fraction (|cos| > 0.9) over the probes after epochs 1-"
        f"{EARLY_EPOCHS}, by init scale: " + ", ".join(f"{s:g}: {v:.3f}" for s, v in means.items()) + ".",
        figure=figure, numbers={"early_aligned_fraction": {f"{s:g}": v for s, v in means.items()}})


def log_ratio(series: Mapping[int, float]) -> float | None:
    """log(value after the last epoch / value after the first epoch) of a positive series."""
    trained = {e: v for e, v in series.items() if e >= 0}
    if 0 not in trained or len(trained) < 2:
        return None
    first, last = trained[0], trained[max(trained)]
    if not (first > 0 and last > 0):
        return None
    return math.log(last / first)


def critical_length_claim(judge_: Judge, runs: Sequence[Run], figure: str | None) -> Claim:
    standard = by_scale(runs, names.STIFFNESS_CRITICAL_LENGTH).get(STANDARD_SCALE, {})
    state = judge_.rules.random_state
    series = {seed: epoch_series(run, names.STIFFNESS_CRITICAL_LENGTH) for seed, run in standard.items()}
    condition = {seed: log_ratio(s) for seed, s in series.items()}
    control = {seed: log_ratio(shuffled_in_time({e: v for e, v in s.items() if e >= 0}, seed, state))
               for seed, s in series.items()}
    if standard and figure:
        draw_critical_length(sweep_dir_of({STANDARD_SCALE: standard}), standard, series)
    text = ", ".join(f"{seed}: {s.get(0, float('nan')):.2f} -> {s[max(s)]:.2f}" for seed, s in sorted(series.items()) if s)
    return judge_.claim(CRITICAL_LENGTH_RULE, "mlp", "decaying", per_seed(condition), per_seed(control),
                        f"Standard-init runs; critical length after epoch 1 -> at the end, per seed: {text or '-'}.",
                        figure=figure)


# -- figures ---------------------------------------------------------------------------------------------


def sweep_dir_of(groups: Mapping[float, Mapping[int, Run]]) -> Path:
    """The sweep folder of the runs (the parent of their job folders)."""
    return next(iter(next(iter(groups.values())).values())).path.parent


def mean_band(curves: Sequence[Mapping[int, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, mean, half-width of a 95% t-free normal band: 1.96 standard errors) over the curves' common keys."""
    keys = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
    values = np.array([[c[k] for k in keys] for c in curves], dtype=float)
    mean = values.mean(axis=0) if len(curves) else np.array([])
    band = 1.96 * values.std(axis=0, ddof=1) / np.sqrt(len(curves)) if len(curves) > 1 else np.zeros_like(mean)
    return np.array(keys, dtype=float) + 1, mean, band  # x: epochs trained (0 = the initial weights)


def save(figure, sweep_dir: Path, name: str) -> None:
    out = sweep_dir / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    for suffix in (".png", ".pdf"):
        figure.savefig(out / f"{name}{suffix}", dpi=150, bbox_inches="tight")


def draw_condensation(sweep_dir: Path, series: Mapping[float, Mapping[int, Mapping[int, float]]]) -> None:
    """Aligned fraction against epochs trained, one line per init scale: mean and band over seeds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 3.5))
    for scale, seeds in series.items():
        x, mean, band = mean_band([s for s in seeds.values() if s])
        axes.plot(x, mean, label=f"init scale {scale:g}")
        axes.fill_between(x, mean - band, mean + band, alpha=0.25)
    axes.axvspan(0.5, EARLY_EPOCHS + 0.5, color="grey", alpha=0.1, label=f"window (epochs 1-{EARLY_EPOCHS})")
    axes.set(xlabel="epochs trained", ylabel="fraction of neuron pairs with |cos| > 0.9",
             title="Condensation of the first layer (mean, 95% band over seeds)")
    axes.legend(fontsize=8)
    save(figure, sweep_dir, CONDENSATION_FIGURE)
    plt.close(figure)


def draw_critical_length(sweep_dir: Path, runs: Mapping[int, Run], series: Mapping[int, Mapping[int, float]]) -> None:
    """Left: mean cos stiffness against input distance after epoch 1 and at the end (Fort Fig. 6
    style); right: the critical length against epochs trained. Means and bands over seeds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    last = min(max(s) for s in series.values() if s)
    for epoch, label in ((0, "after epoch 1"), (last, f"after epoch {last + 1}")):
        curves = [binned(run, epoch) for run in runs.values()]
        curves = [c for c in curves if c[0].size]
        if not curves:
            continue
        distance = np.mean([c[0] for c in curves], axis=0)
        values = np.array([c[1] for c in curves])
        band = 1.96 * values.std(axis=0, ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0 * distance
        left.plot(distance, values.mean(axis=0), marker="o", label=label)
        left.fill_between(distance, values.mean(axis=0) - band, values.mean(axis=0) + band, alpha=0.25)
    left.axhline(0, color="black", lw=0.5)
    left.set(xlabel="input distance (bin mean)", ylabel="mean cos stiffness", title="Stiffness vs input distance")
    left.legend(fontsize=8)
    x, mean, band = mean_band([{e: v for e, v in s.items() if e >= 0} for s in series.values() if s])
    right.plot(x, mean)
    right.fill_between(x, mean - band, mean + band, alpha=0.25)
    right.set(xlabel="epochs trained", ylabel="critical length", title="Dynamical critical length")
    figure.tight_layout()
    save(figure, sweep_dir, CRITICAL_LENGTH_FIGURE)
    plt.close(figure)


def binned(run: Run, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """(bin mean distances, bin mean cos stiffness) of the run's probe after epoch ``epoch`` + 1."""
    distances, cosines = [], []
    k = 0
    while run.has(names.stiffness_distance_cos(k)):
        cos = epoch_series(run, names.stiffness_distance_cos(k)).get(epoch)
        distance = epoch_series(run, names.stiffness_distance(k)).get(epoch)
        if cos is None or distance is None:
            return np.array([]), np.array([])
        distances.append(distance)
        cosines.append(cos)
        k += 1
    return np.array(distances), np.array(cosines)
