"""Claims of Zhang et al. 2017 (random labels fitted, slower, test error at chance; the critical-period
question of random labels and shuffled pixels) and Fort et al.'s random-label stiffness claim, from
the zhang_fit and zhang_window studies (studies_zhang.py), with their figures."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from critical_periods.analysis.runs import Run
from critical_periods.analysis.tables import plotted_runs
from critical_periods.record import metric_names as names
from critical_periods.reproduction.claims import (
    CONTROL_SEED_OFFSET, Claim, Judge, epoch_series, errors_pp, final_train_acc, judged_seeds, shifted, val_series,
)
from critical_periods.reproduction.statistics import paired_effects, per_seed

FIT_THRESHOLD = 0.99   # "fitted": the epoch's train accuracy reaches 99% (docs/rules.yaml)
CHANCE_PP = 90.0       # 10 classes
RANDOM, CLEAN, SHUFFLED = "random_labels", "none", "shuffled_pixels"


# -- per-run statistics --------------------------------------------------------------------------------


def by_seed(runs: Sequence[Run], kind: str) -> dict[int, Run]:
    return {r.seed: r for r in plotted_runs(runs) if (r.deficit or CLEAN) == kind and r.seed is not None}


def epochs_to_fit(train_acc: Mapping[int, float], budget: int) -> tuple[int, bool]:
    """``(epochs, fitted)``: the first epoch, counted from 1, whose train accuracy is >= 99%; the
    budget and ``False`` if none is (censored).

    >>> epochs_to_fit({0: 0.5, 1: 0.991, 2: 1.0}, 80), epochs_to_fit({0: 0.5}, 80)
    ((2, True), (80, False))
    """
    for epoch in sorted(train_acc):
        if train_acc[epoch] >= FIT_THRESHOLD:
            return epoch + 1, True
    return budget, False


def fit_epochs(runs: Mapping[int, Run]) -> tuple[dict[int, int], list[int]]:
    """Epochs to fit per seed, and the seeds censored at their budget."""
    out, censored = {}, []
    for seed, run in runs.items():
        epochs, fitted = epochs_to_fit(val_series(run, names.TRAIN_ACC), run.epochs_trained or run.epochs or 0)
        out[seed] = epochs
        if not fitted:
            censored.append(seed)
    return out, censored


def log_ratio(a: Mapping[int, int], b: Mapping[int, int]) -> dict[int, float]:
    return {s: math.log(a[s] / b[s]) for s in a if s in b and a[s] > 0 and b[s] > 0}


def class_structure(run: Run) -> float | None:
    """Mean over the run's stiffness probes of (within-class minus between-class cos stiffness)."""
    same, diff = epoch_series(run, names.STIFFNESS_COS_SAME), epoch_series(run, names.STIFFNESS_COS_DIFF)
    gaps = [same[e] - diff[e] for e in same if e in diff]
    return float(np.mean(gaps)) if gaps else None


# -- claims -----------------------------------------------------------------------------------------------


def fit_claim(judge_: Judge, runs: Sequence[Run], figure: str | None) -> Claim:
    rule = "zhang-random-labels-fit"
    random, clean = by_seed(runs, RANDOM), by_seed(runs, CLEAN)
    first_acc = {s: val_series(r, names.TRAIN_ACC).get(0) for s, r in random.items()}
    final_acc = {s: final_train_acc(r) for s, r in random.items()}
    fits = per_seed({s: None if a is None else 100 * a - 99 for s, a in judged_seeds(final_acc).items()})
    fits_control = per_seed({s: None if a is None else 100 * a - 99 for s, a in judged_seeds(first_acc).items()})
    random_epochs, random_censored = fit_epochs(random)
    clean_epochs, clean_censored = fit_epochs(clean)
    note = (f"censored at the budget (never >= 99%): random labels seeds {random_censored}, true labels seeds "
            f"{clean_censored}") if random_censored or clean_censored else ""
    slower = per_seed(log_ratio(judged_seeds(random_epochs), judged_seeds(clean_epochs)), note)
    slower_control = per_seed(log_ratio(shifted(clean_epochs), judged_seeds(clean_epochs)))
    condition = {"fits random labels": fits, "slower than true labels": slower}
    control = {"fits random labels": fits_control, "slower than true labels": slower_control}
    part = judge_(rule, condition).parts
    factor = "-"
    if len(part) > 1 and part[1].effect is not None and np.isfinite(part[1].effect):
        low, high = part[1].ci95 if part[1].ci95 else (float("nan"), float("nan"))
        factor = f"{math.exp(part[1].effect):.2f}x [{math.exp(low):.2f}, {math.exp(high):.2f}]"
    measured = (f"Final train accuracy with random labels per seed: { {s: round(100 * a, 2) for s, a in judged_seeds(final_acc).items() if a is not None} } %; "
                f"epochs to 99% train accuracy, random labels {judged_seeds(random_epochs)}, true labels "
                f"{judged_seeds(clean_epochs)}; slow-down factor (geometric mean over seeds, 95% CI) {factor}.")
    return judge_.claim(rule, "mlp", "constant", condition, control, measured, figure=figure,
                        numbers={"epochs_to_fit_random": random_epochs, "epochs_to_fit_true": clean_epochs,
                                 "slowdown_factor": factor})


def chance_claim(judge_: Judge, runs: Sequence[Run], figure: str | None) -> Claim:
    random, clean = judged_seeds(errors_pp(runs, RANDOM)), judged_seeds(errors_pp(runs, CLEAN))
    condition = per_seed({s: e - CHANCE_PP for s, e in random.items()})
    control = per_seed({s: e - CHANCE_PP for s, e in clean.items()})
    measured = (f"Final test error per seed: random labels { {s: round(e, 1) for s, e in random.items()} } %, "
                f"true labels { {s: round(e, 1) for s, e in clean.items()} } %.")
    return judge_.claim("zhang-random-labels-chance", "mlp", "constant", condition, control, measured, figure=figure)


def stiffness_claim(judge_: Judge, runs: Sequence[Run], figure: str | None) -> Claim:
    random = {s: class_structure(r) for s, r in by_seed(runs, RANDOM).items()}
    clean = {s: class_structure(r) for s, r in by_seed(runs, CLEAN).items()}
    measured = ("Mean over probes of within- minus between-class cos stiffness (classes as trained): random labels "
                f"{ {s: round(v, 4) for s, v in judged_seeds(random).items() if v is not None} }, true labels "
                f"{ {s: round(v, 4) for s, v in judged_seeds(clean).items() if v is not None} }.")
    return judge_.claim("fort-stiffness-random-labels", "mlp", "constant", per_seed(judged_seeds(random)),
                        per_seed(judged_seeds(clean)), measured, figure=figure)


def window_claim(judge_: Judge, runs: Sequence[Run], figure: str | None) -> Claim:
    clean = errors_pp(runs, CLEAN)
    control_effects = paired_effects(shifted(clean), judged_seeds(clean))
    condition, control = {}, {}
    for kind, part in ((RANDOM, "random labels, lasting harm"), (SHUFFLED, "shuffled pixels, lasting harm")):
        condition[part] = paired_effects(judged_seeds(errors_pp(runs, kind)), judged_seeds(clean))
        control[part] = control_effects
    lengths = sorted({r.length for r in plotted_runs(runs) if r.length})
    measured = (f"Deficit in epochs 0-{lengths[0] - 1 if lengths else '?'} then clean training; final test error minus "
                f"the same seed's clean run.")
    return judge_.claim("zhang-early-window-harm", "mlp", "constant", condition, control, measured, figure=figure)


# -- figures ----------------------------------------------------------------------------------------------


def band(series: Sequence[Mapping[int, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epochs, mean over seeds and the half-width of its normal 95% interval (1.96 standard errors)."""
    epochs = sorted(set.intersection(*(set(s) for s in series))) if series else []
    values = np.array([[s[e] for e in epochs] for s in series], dtype=float)
    if not epochs:
        return np.array([]), np.array([]), np.array([])
    sem = values.std(axis=0, ddof=1) / np.sqrt(len(series)) if len(series) > 1 else np.zeros(len(epochs))
    return np.array(epochs) + 1, values.mean(axis=0), 1.96 * sem


def draw(runs: Sequence[Run], name: str, ylabel: str, title: str,
         curves: Sequence[tuple[str, str, Callable[[Run], Mapping[int, float]]]]) -> None:
    """One panel: per (label, kind, series of a run) the mean over seeds 0-4 with its 95% band, saved as
    ``<sweep dir>/analysis/<name>.png`` and ``.pdf``."""
    judged = [r for r in plotted_runs(runs) if r.seed is not None and r.seed < CONTROL_SEED_OFFSET]
    if not judged:
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(judged[0].path).parent / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, kind, series_of in curves:
        series = [s for s in (series_of(r) for r in judged if (r.deficit or CLEAN) == kind) if s]
        epochs, mean, half = band(series)
        if len(epochs):
            ax.plot(epochs, mean, label=f"{label} ({len(series)} seeds)")
            ax.fill_between(epochs, mean - half, mean + half, alpha=0.25)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    for suffix in (".png", ".pdf"):
        fig.savefig(out / f"{name}{suffix}")
    plt.close(fig)


def percent(key: str, complement: bool = False) -> Callable[[Run], dict[int, float]]:
    return lambda run: {e: 100 * ((1 - v) if complement else v) for e, v in val_series(run, key).items()}


def stiffness_gap(run: Run) -> dict[int, float]:
    same, diff = epoch_series(run, names.STIFFNESS_COS_SAME), epoch_series(run, names.STIFFNESS_COS_DIFF)
    return {e: same[e] - diff[e] for e in same if e in diff and e >= 0}


def draw_figures(fit_runs: Sequence[Run], window_runs: Sequence[Run]) -> None:
    draw(fit_runs, "fit_curves", "train accuracy (%)", "Zhang et al. Fig. 1a: fitting true and random labels",
         [("true labels", CLEAN, percent(names.TRAIN_ACC)), ("random labels", RANDOM, percent(names.TRAIN_ACC))])
    draw(fit_runs, "test_error", "validation error (%)", "Zhang et al.: held-out error (chance = 90%)",
         [("true labels", CLEAN, percent(names.VAL_ACC, True)), ("random labels", RANDOM, percent(names.VAL_ACC, True))])
    draw(fit_runs, "stiffness", "within- minus between-class cos stiffness", "Fort et al.: class structure of stiffness",
         [("true labels", CLEAN, stiffness_gap), ("random labels", RANDOM, stiffness_gap)])
    draw(window_runs, "window", "validation error (%)", "Early deficit window (epochs 0-19), then clean",
         [("clean", CLEAN, percent(names.VAL_ACC, True)), ("random labels", RANDOM, percent(names.VAL_ACC, True)),
          ("shuffled pixels", SHUFFLED, percent(names.VAL_ACC, True))])


def zhang_claims(judge_: Judge, fit_runs: Sequence[Run], window_runs: Sequence[Run],
                 figure: Callable[[str, str], str]) -> list[Claim]:
    """Every claim of the two studies, after drawing their figures into the studies' analysis folders."""
    draw_figures(fit_runs, window_runs)
    return [fit_claim(judge_, fit_runs, figure("zhang_fit", "fit_curves.png")),
            chance_claim(judge_, fit_runs, figure("zhang_fit", "test_error.png")),
            stiffness_claim(judge_, fit_runs, figure("zhang_fit", "stiffness.png")),
            window_claim(judge_, window_runs, figure("zhang_window", "window.png"))]
