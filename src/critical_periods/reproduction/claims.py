"""Each paper claim, the numbers that test it, and a verdict by a rule stated beside it.

The rules (and the protocols in ``studies.py``) are fixed before the runs and written into the
report next to the paper's protocol; a claim that does not reproduce is reported as measured.
Errors are fractions here and percent in the report. Every verdict is one of ``VERDICTS``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from critical_periods.record import metric_names as names
from critical_periods.analysis.break_even import PASS_FRACTION, RunPeaks, break_even_runs, compare
from critical_periods.analysis.runs import Run
from critical_periods.analysis.tables import Stat, baselines, plotted_runs, removal_table

# A lasting effect must exceed this many percentage points of final test error...
MIN_EFFECT_PP = 2.0
# ...and the seed-to-seed range of the baseline.
REPRODUCED, PARTLY, NOT, INCONCLUSIVE = "reproduced", "partly", "not reproduced", "inconclusive"
VERDICTS = (REPRODUCED, PARTLY, NOT, INCONCLUSIVE)
# A run that ends more than this far (fraction) below the clean runs' final training accuracy has not
# finished learning the real data: its test error says nothing about lasting harm.
UNCONVERGED_GAP = 0.10
# The sensitivity window must do damage at onset 0 of at least this many seed spreads.
WINDOW_DAMAGE_SPREADS = 3.0


@dataclass
class Claim:
    title: str
    model: str
    paper: str        # what the paper did and found
    protocol: str     # what we did, what differs and why
    rule: str
    verdict: str
    measured: str
    numbers: dict[str, Any] = field(default_factory=dict)
    table: list[list[str]] = field(default_factory=list)
    headers: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict={self.verdict!r} is not allowed: choose one of {', '.join(VERDICTS)}")

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        record["claim"] = record.pop("title")
        record["numbers"] = jsonable(record["numbers"])
        return record


def jsonable(value: Any) -> Any:
    """Numbers as plain floats (NaN and inf as ``None``: JSON has neither), recursively."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value


def pp(fraction: float | None) -> str:
    return "-" if fraction is None or not np.isfinite(fraction) else f"{100 * fraction:.1f}"


def signed_pp(fraction: float | None) -> str:
    return "-" if fraction is None or not np.isfinite(fraction) else f"{100 * fraction:+.1f}"


def missing(*values: float | None) -> bool:
    """A study too small to give this number (e.g. the --quick grid, or a study that was skipped)."""
    return any(v is None or not np.isfinite(v) for v in values)


def model_label(runs: Sequence[Run]) -> str:
    """``mlp`` / ``conv1d`` / ...: the model of the study's runs (its config group option)."""
    models = {(r.model or "?").lower().replace("conv1dnet", "conv1d") for r in runs}
    return ",".join(sorted(models)) or "?"


# -- removal curves (Achille Fig. 1-2) ---------------------------------------------------------------


def removal_curves(runs: Sequence[Run], kinds: Sequence[str]) -> tuple[Stat | None, dict[str, dict[int, Stat]]]:
    """The baseline and, per kind, the final error per removal epoch: the analysis's own tables,
    for a study with a single condition (anything else varying would mix curves)."""
    base = baselines(runs)
    if len(base) > 1:
        raise ValueError(f"a reproduction study must have one condition, found {sorted(base)}")
    curves = {kind: {c.x: c.error for c in removal_table(runs) if c.kind == kind} for kind in kinds}
    return next(iter(base.values()), None), {kind: curve for kind, curve in curves.items() if curve}


def late_effect(curve: dict[int, Stat], base: Stat | None) -> float:
    """Error at the latest removal epoch minus the baseline (a fraction); NaN without either."""
    return curve[max(curve)].mean - base.mean if curve and base else float("nan")


def noise_floor(base: Stat) -> float:
    """The smallest effect that counts as lasting: MIN_EFFECT_PP, or the baseline's seed range if larger."""
    return max(MIN_EFFECT_PP / 100, base.high - base.low)


def last_train_acc(run: Run) -> float | None:
    """The run's final training accuracy: the last epoch's ``train/acc`` (mean over its batches)."""
    if run.summary is not None and run.summary.final.get(names.FINAL_TRAIN_ACC) is not None:
        return run.summary.final[names.FINAL_TRAIN_ACC]
    values = [row[names.TRAIN_ACC] for row in run.metrics if row.get(names.TRAIN_ACC) is not None]
    return values[-1] if values else None


def final_train_acc(runs: Sequence[Run], kind: str, removal: int | None = None) -> list[float]:
    """Final training accuracy of the completed runs of ``kind`` (and removal epoch)."""
    values = [last_train_acc(r) for r in plotted_runs(runs)
              if r.deficit == kind and (removal is None or r.removal_epoch == removal)]
    return [v for v in values if v is not None]


def curve_table(runs: Sequence[Run], curves: dict[str, dict[int, Stat]], base: Stat | None) -> tuple[list[str], list[list[str]]]:
    """Per kind and removal epoch: mean final test error % (runs), and the lowest final training accuracy %."""
    epochs = sorted({0, *(e for curve in curves.values() for e in curve)})
    rows = []
    base_train = final_train_acc(runs, "none")
    for kind, curve in curves.items():
        cells = []
        for e in epochs:
            stat = curve.get(e) or (base if e == 0 else None)
            train = final_train_acc(runs, kind, e) if e else base_train
            cells.append(f"{pp(stat.mean)} ({stat.n}); train {pp(min(train))}" if stat and train
                         else f"{pp(stat.mean)} ({stat.n})" if stat else "-")
        rows.append([kind, *cells])
    return ["deficit", *(f"removed at {e}: test error % (runs); lowest final train acc %" for e in epochs)], rows


def lasting(effect: float, base: Stat) -> bool:
    return effect >= noise_floor(base)


@dataclass
class RemovalStudy:
    """One study's removal curves, ready for the claims."""

    runs: Sequence[Run]
    base: Stat | None
    curves: dict[str, dict[int, Stat]]
    late: dict[str, float]
    model: str
    schedule: str  # how the lr moves, in words

    @classmethod
    def of(cls, runs: Sequence[Run], kinds: Sequence[str], schedule: str, model: str | None = None) -> RemovalStudy:
        """``model`` names the study's model when it has no runs to tell (a skipped study)."""
        base, curves = removal_curves(runs, kinds)
        model = model_label(runs) if runs else model or "?"
        return cls(runs, base, curves, {k: late_effect(c, base) for k, c in curves.items()}, model, schedule)

    def converged(self, kind: str) -> bool | None:
        """Did the latest-removal runs of ``kind`` end within UNCONVERGED_GAP of the clean runs' training accuracy?"""
        curve, clean = self.curves.get(kind), final_train_acc(self.runs, "none")
        train = final_train_acc(self.runs, kind, max(curve)) if curve else []
        if not train or not clean:
            return None
        return min(train) >= float(np.mean(clean)) - UNCONVERGED_GAP

    def base_text(self) -> str:
        b = self.base
        return f"baseline (no deficit) {pp(b.mean)}% ({b.n} seeds, range {pp(b.high - b.low)} pp)" if b else "no baseline"


ACHILLE_PROTOCOL = ("Achille et al. 2019, Fig. 1-2: All-CNN on CIFAR-10, deficit from epoch 0 removed at epoch t0, then "
                    "160 clean epochs; SGD lr 0.075 x0.97 per epoch, weight decay 5e-4.")


def our_removal_protocol(study: RemovalStudy) -> str:
    return (f"MNIST-1D, model {study.model}; deficit from epoch 0 removed at each epoch, then the same clean epochs; "
            f"{study.schedule}; the no-deficit runs of the same seeds in the same sweep. Shorter than the paper "
            "(a 4000-example set is fitted in ~40 epochs), so the removal epochs are scaled down.")


def blur_claim(study: RemovalStudy) -> Claim:
    blur = study.late.get("blur", float("nan"))
    curve = study.curves.get("blur", {})
    grows = bool(curve) and curve[max(curve)].mean > curve[min(curve)].mean
    if missing(blur) or study.base is None:
        verdict = INCONCLUSIVE
    else:
        verdict = REPRODUCED if lasting(blur, study.base) and grows else PARTLY if blur > 0 else NOT
    headers, rows = curve_table(study.runs, study.curves, study.base)
    return Claim(
        f"Blur early in training does lasting harm, growing with the removal epoch ({study.schedule})",
        study.model,
        ACHILLE_PROTOCOL + " The final error grows with t0 and saturates at up to ~3x the baseline (a replication: "
        "10.6% -> 13.9% -> 16.8% -> 18.8% for t0 = 0, 35, 70, 105).",
        our_removal_protocol(study),
        f"reproduced if the error at the latest removal epoch exceeds the baseline by >= {MIN_EFFECT_PP} pp and by more "
        "than the baseline's seed range, and exceeds the error at the earliest removal epoch; partly if it only exceeds "
        "the baseline; inconclusive without the runs",
        verdict,
        f"blur removed at the latest epoch: {signed_pp(blur)} pp over the {study.base_text()}.",
        {"late_effect": blur, "baseline_error": study.base.mean if study.base else None,
         "curve": {kind: {e: s.mean for e, s in c.items()} for kind, c in study.curves.items()}},
        rows, headers,
    )


def no_critical_period_claim(study: RemovalStudy, kind: str, paper_name: str) -> Claim:
    """Flip / label permutation: no lasting harm, judged against the noise floor and against blur."""
    effect, blur = study.late.get(kind, float("nan")), study.late.get("blur", float("nan"))
    converged = study.converged(kind)
    if missing(effect) or study.base is None or converged is None:
        verdict = INCONCLUSIVE
    elif not converged:
        verdict = INCONCLUSIVE
    elif not lasting(effect, study.base):
        verdict = REPRODUCED
    else:
        verdict = PARTLY if not missing(blur) and effect < 0.5 * blur else NOT
    return Claim(
        f"A {paper_name} has no critical period ({study.schedule})",
        study.model,
        ACHILLE_PROTOCOL + f" With a {paper_name}, the final error returns to the baseline whatever t0.",
        our_removal_protocol(study),
        f"reproduced if the error at the latest removal epoch exceeds the baseline by less than {MIN_EFFECT_PP} pp or the "
        "baseline's seed range, whichever is larger; partly if more, but less than half of blur's late effect in the same "
        f"study; not reproduced otherwise; inconclusive if the latest-removal runs end more than {pp(UNCONVERGED_GAP)} pp "
        "below the clean runs' final training accuracy (they never finished learning the real task)",
        verdict,
        f"{paper_name} removed at the latest epoch: {signed_pp(effect)} pp over the {study.base_text()} "
        f"(blur: {signed_pp(blur)} pp); lowest final training accuracy of those runs "
        f"{pp(min(final_train_acc(study.runs, kind, max(study.curves[kind])), default=float('nan')) if kind in study.curves else None)}%, "
        f"clean runs {pp(float(np.mean(final_train_acc(study.runs, 'none'))) if final_train_acc(study.runs, 'none') else None)}%.",
        {"late_effect": effect, "blur_late_effect": blur, "converged": converged},
    )


def noise_claim(study: RemovalStudy) -> Claim:
    noise, blur = study.late.get("noise", float("nan")), study.late.get("blur", float("nan"))
    converged = study.converged("noise")
    lr_note = ""
    curve = study.curves.get("noise")
    if curve:
        schedule = next(r for r in plotted_runs(study.runs) if r.deficit == "noise").config.get("schedule", {})
        if schedule.get("lr_schedule") == "exponential" and not schedule.get("lr_restart"):
            lr_note = (f" With the lr decaying x{schedule['lr_gamma']} per epoch, a network whose input was noise until "
                       f"epoch {max(curve)} starts on the real input at {schedule['lr_gamma'] ** max(curve):.3f} of the initial lr.")
    if missing(noise, blur) or converged is None or not converged:
        verdict = INCONCLUSIVE
    else:
        verdict = REPRODUCED if noise < blur else NOT
    return Claim(
        f"Noise is a milder deficit than blur ({study.schedule})",
        study.model,
        ACHILLE_PROTOCOL + " Replacing each image by white noise costs less final accuracy than blur: the network "
        "starts learning the real input from scratch once the noise is removed.",
        our_removal_protocol(study),
        "reproduced if noise's late effect (error at the latest removal epoch minus the baseline) is smaller than blur's "
        f"in the same study; inconclusive if the latest-removal noise runs end more than {pp(UNCONVERGED_GAP)} pp below "
        "the clean runs' final training accuracy",
        verdict,
        f"late effect: noise {signed_pp(noise)} pp, blur {signed_pp(blur)} pp; the noise runs "
        f"{'converged' if converged else 'did not converge' if converged is not None else '-'}.{lr_note}",
        {"noise_late_effect": noise, "blur_late_effect": blur, "converged": converged},
    )


def critical_period_claims(kinds: RemovalStudy, controls: Sequence[RemovalStudy] = ()) -> list[Claim]:
    """Blur, flip, label permutation and noise for one model under the decaying lr; blur, label
    permutation and noise again under each lr control."""
    claims = [blur_claim(kinds), no_critical_period_claim(kinds, "vertical_flip", "vertical flip"),
              no_critical_period_claim(kinds, "label_permutation", "label permutation"), noise_claim(kinds)]
    for control in controls:
        claims += [blur_claim(control), no_critical_period_claim(control, "label_permutation", "label permutation"),
                   noise_claim(control)]
    return claims


# -- Fisher trace and sensitivity (Achille Fig. 4) ----------------------------------------------------


def epoch_series(run: Run, key: str) -> dict[int, float]:
    """``{epoch: value}`` of a probe metric; -1 is the probe of the initial weights (step 0)."""
    return {int(r["epoch"]) if r["step"] else -1: r[key] for r in run.metrics
            if r.get(key) is not None and "epoch" in r and "step" in r}


def mean_series(runs: Sequence[Run], key: str) -> tuple[list[int], np.ndarray]:
    """The epochs every run probed, and the mean over runs there."""
    curves = [epoch_series(r, key) for r in runs]
    epochs = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
    return epochs, np.array([[c[e] for e in epochs] for c in curves]).mean(axis=0) if epochs else np.array([])


def clean_probe_runs(runs: Sequence[Run], key: str) -> list[Run]:
    return [r for r in plotted_runs(runs) if r.is_baseline and r.has(key)]


def fisher_rise_claim(runs: Sequence[Run], model: str) -> Claim:
    clean = clean_probe_runs(runs, names.FISHER_TRACE)
    epochs, trace = mean_series(clean, names.FISHER_TRACE)
    rule = ("reproduced if the mean exact Fisher trace of the clean runs peaks after the initial weights and before the "
            "last epoch, ends below half its peak, and the validation accuracy at the end is above its value at the peak; "
            "partly if it only peaks after the initial weights")
    paper = ("Achille et al. 2019, Fig. 4-5: the trace of the Fisher information of clean training rises fast in the first "
             "epochs, then falls while accuracy still improves.")
    protocol = f"MNIST-1D, model {model}; the exact Fisher trace (expectation over all classes) on 512 clean training examples, every epoch."
    if len(epochs) < 3:
        return Claim("Without a deficit, the Fisher trace rises early, then falls while accuracy still improves", model,
                     paper, protocol, rule, INCONCLUSIVE, "no clean run with the Fisher probe.")
    peak_i = int(np.argmax(trace))
    peak_epoch, final = epochs[peak_i], float(trace[-1])
    rises_falls = 0 < peak_i < len(trace) - 1 and final < 0.5 * trace[peak_i]
    val = {int(r["epoch"]): r[names.VAL_ACC] for r in clean[0].metrics if r.get(names.VAL_ACC) is not None}
    at_peak = val.get(max(peak_epoch, 0), float("nan"))
    still_learning = bool(val) and val[max(val)] > at_peak
    return Claim(
        "Without a deficit, the Fisher trace rises early, then falls while accuracy still improves", model, paper, protocol,
        rule, REPRODUCED if rises_falls and still_learning else PARTLY if peak_i > 0 else NOT,
        f"trace at the initial weights {trace[0]:.3g}, peak {trace[peak_i]:.3g} after epoch {peak_epoch}, final {final:.3g} "
        f"({final / trace[peak_i]:.0%} of the peak), mean of {len(clean)} runs; validation accuracy {pp(at_peak)}% at the "
        f"peak, {pp(val[max(val)])}% at the end (seed {clean[0].seed}).",
        {"initial": trace[0], "peak": trace[peak_i], "peak_epoch": peak_epoch, "final": final, "runs": len(clean)},
    )


def paired_sensitivity(runs: Sequence[Run], kind: str = "blur") -> tuple[dict[int, list[float]], list[float], int | None]:
    """Per onset, each seed's final error with the window minus that of its matched clean run (same
    seed, onset and length); the clean runs' errors at the earliest onset; the window length."""
    clean = {(r.seed, r.onset): r.test_error for r in plotted_runs(runs) if r.deficit in ("none", None)}
    damage: dict[int, list[float]] = defaultdict(list)
    length = None
    for r in plotted_runs(runs):
        if r.deficit == kind and (r.length or 0) > 0 and (r.seed, r.onset) in clean:
            damage[r.onset].append(r.test_error - clean[(r.seed, r.onset)])
            length = r.length
    first = min(damage) if damage else None
    base = [e for (seed, onset), e in clean.items() if onset == first]
    return dict(sorted(damage.items())), base, length


def sensitivity_claim(runs: Sequence[Run], model: str) -> Claim:
    damage, base, length = paired_sensitivity(runs)
    rule = (f"valid only if the mean damage at the earliest onset is >= {WINDOW_DAMAGE_SPREADS:g}x the seed spread (the "
            "standard deviation over seeds of the matched clean runs' final error), else inconclusive; reproduced if the "
            "largest mean sensitivity is at one of the two earliest onsets and the sensitivity at the latest onset is "
            "below half of it; partly if only the first holds")
    paper = ("Achille et al. 2019, Fig. 4: a 40-epoch blur window at each onset, the same clean training after every "
             "window; sensitivity (the drop in final test accuracy) is highest for early onsets, where the Fisher "
             "information is high, and falls to ~0 later.")
    protocol = (f"MNIST-1D, model {model}; a {length}-epoch blur window at each onset, then the same clean epochs; "
                "sensitivity = final test error minus that of the same seed's clean run of the same length (paired).")
    title = "Sensitivity to a deficit window is highest early and vanishes later"
    if len(damage) < 2 or len(base) < 2:
        return Claim(title, model, paper, protocol, rule, INCONCLUSIVE, "fewer than two onsets or seeds with matched clean runs.")
    onsets = list(damage)
    mean = np.array([np.mean(damage[o]) for o in onsets])
    spread = float(np.std(base))
    valid = mean[0] >= WINDOW_DAMAGE_SPREADS * spread
    peak_i = int(np.argmax(mean))
    early, vanishes = peak_i <= 1, mean[-1] < 0.5 * mean[peak_i]
    verdict = INCONCLUSIVE if not valid else REPRODUCED if early and vanishes else PARTLY if early else NOT
    epochs, trace = mean_series(clean_probe_runs(runs, names.FISHER_TRACE), names.FISHER_TRACE)
    inside = [float(np.mean([t for e, t in zip(epochs, trace) if o <= e < o + length])) if epochs else float("nan")
              for o in onsets]
    r = float(np.corrcoef(mean, inside)[0, 1]) if len(onsets) > 2 and all(np.isfinite(inside)) else float("nan")
    return Claim(
        title, model, paper, protocol, rule, verdict,
        f"damage at onset {onsets[0]}: {signed_pp(mean[0])} pp, {mean[0] / spread if spread else float('inf'):.1f}x the seed "
        f"spread {pp(spread)} pp ({len(base)} seeds); largest at onset {onsets[peak_i]}, {signed_pp(mean[-1])} pp at onset "
        f"{onsets[-1]}. Pearson correlation with the mean Fisher trace inside the window (reported, not judged): {r:.2f}.",
        {"window_length": length, "seed_spread": spread, "sensitivity": dict(zip(onsets, mean)),
         "fisher_in_window": dict(zip(onsets, inside)), "correlation_with_fisher": r},
        [[str(o), signed_pp(m), str(len(damage[o])), f"{t:.3g}"] for o, m, t in zip(onsets, mean, inside)],
        ["onset", f"sensitivity (pp, {length}-epoch blur)", "seeds", "mean Fisher trace in the window"],
    )


# -- break-even (Jastrzebski et al. 2020) -----------------------------------------------------------------

# column stem, printed name, direction of the peak as SGD's noise grows (lr up or batch down)
PEAKS = (("lambda_h1", "lambda_H^1", -1), ("lambda_k1", "lambda_K^1", -1), ("trace_k", "tr K", -1),
         ("cond_k", "lambda_K^*/lambda_K^1", +1), ("trace_k_ratio", "tr K/lambda_K^1", +1))


def break_even_record(study: str, result: RunPeaks) -> dict[str, Any]:
    """One row of ``reproduction.json``'s ``break_even_runs``."""
    run = result.run
    return jsonable({
        "study": study, "lr": run.lr, "batch_size": run.batch_size, "seed": run.seed,
        "max_lambda_h1": result.peaks_all.get("lambda_h1"), "two_over_lr": result.two_over_lr,
        "passed_break_even": result.passed_break_even, "break_even_epoch": result.break_even_epoch,
        "threshold_epoch": result.cutoff_epoch, "compared": result.comparable,
        "peaks_to_threshold": result.peaks, "peaks_whole_run": result.peaks_all,
    })


def agreement(groups: dict[Any, list[RunPeaks]], order: Sequence[Any], attribute: str) -> tuple[list[list[str]], int, int]:
    """Per metric, the setting means of ``attribute`` (``peaks`` or ``peaks_all``) in noise order, and
    whether they move monotonically as predicted; returns the rows, metrics that agree, metrics logged."""
    rows, agree, logged = [], 0, 0
    for stem, name, direction in PEAKS:
        values = []
        for setting in order:
            vals = [getattr(g, attribute).get(stem) for g in groups[setting]]
            values.append(float(np.mean(vals)) if vals and None not in vals else None)
        if None in values:
            rows.append([name, *("-" for _ in values), "not logged"])
            continue
        logged += 1
        ok = all(direction * (b - a) > 0 for a, b in zip(values, values[1:]))
        agree += ok
        rows.append([name, *(f"{v:.3g}" for v in values), "yes" if ok else "no"])
    return rows, agree, logged


def break_even_claim(runs: Sequence[Run], setting: str, threshold: float, study: str) -> tuple[list[Claim], list[dict]]:
    """Jastrzebski et al. conjectures 1 (``setting="lr"``) or 2 (``"batch_size"``), on the runs that
    pass break-even before their threshold epoch; every run's numbers for ``break_even_runs``."""
    results = compare(break_even_runs(runs), threshold)
    records = [break_even_record(study, r) for r in results]
    label = (lambda v: f"lr {v:g}") if setting == "lr" else (lambda v: f"batch {v}")
    what = "a larger learning rate" if setting == "lr" else "a smaller batch"
    title = f"Break-even: {what} gives smaller peak curvature and gradient covariance, a better-conditioned K"
    rule = (f"decided on the maxima up to each run's threshold epoch (the first epoch with training accuracy >= "
            f"{pp(threshold)}%), fixed in advance because the conjectures concern the early phase and a 4000-example "
            "training set is then memorised, which can raise gradient statistics again late in the run; only runs "
            f"whose lambda_H^1 reached {PASS_FRACTION:g} x 2/lr no later than their threshold epoch are compared (others are "
            "listed and left out); per-setting means over seeds; reproduced if every logged peak moves monotonically "
            "in the predicted direction across the settings, partly if at least half do, not reproduced otherwise; "
            "inconclusive with fewer than two compared settings")
    paper = ("Jastrzebski et al. 2020 (ICLR), conjectures 1-2, Fig. 2-4: SimpleCNN/ResNet on CIFAR-10, lrs and batch sizes "
             "hand-picked so that every run passes break-even, ~200 epochs; maxima over the whole trajectory of lambda_H^1 "
             "(Lanczos on ~5% of the data) and lambda_K^1, tr K (K from mini-batch gradients, B=128) fall, and "
             "lambda_K^*/lambda_K^1 (the submitted version: the bound tr K/lambda_K^1) rises, as lr grows or batch shrinks. "
             "A vertical line marks the first epoch above 60% training accuracy: a diagnostic, not a cut-off.")
    protocol = ("MNIST-1D MLP, plain SGD (no momentum, no weight decay), constant lr; lambda_H^1 on 512 examples, K from "
                "25 mini-batch gradients of B=128 whatever the training batch; probed every 2 epochs and at early steps. "
                "The maxima are taken both over the whole run and up to the threshold epoch.")
    compared = [r for r in results if r.comparable]
    excluded = [r for r in results if not r.comparable]
    why = "; ".join(
        f"{label(getattr(r.run, setting))} seed {r.run.seed}: max lambda_H^1 {r.peaks_all.get('lambda_h1') or float('nan'):.3g} "
        f"vs 2/lr {r.two_over_lr or float('nan'):.3g}, "
        + ("never passed break-even" if not r.passed_break_even else
           "never reached the threshold accuracy" if r.cutoff_epoch is None else
           f"passed break-even in epoch {r.break_even_epoch}, after its threshold epoch {r.cutoff_epoch}")
        for r in excluded)
    groups: dict[Any, list[RunPeaks]] = defaultdict(list)
    for r in compared:
        groups[getattr(r.run, setting)].append(r)
    order = sorted(groups, key=lambda v: v if setting == "lr" else -v)  # growing SGD noise
    if len(order) < 2:
        return [Claim(title, "mlp", paper, protocol, rule, INCONCLUSIVE,
                      f"fewer than two settings with runs past break-even before their threshold epoch. Left out: {why or '-'}.",
                      {"excluded": len(excluded)})], records
    rows, agree, logged = agreement(groups, order, "peaks")
    rows_all, agree_all, logged_all = agreement(groups, order, "peaks_all")
    if logged == 0:
        verdict = INCONCLUSIVE
    else:
        verdict = REPRODUCED if agree == logged else PARTLY if 2 * agree >= logged else NOT
    edge = "; ".join(
        f"{label(s)}: 2/lr {groups[s][0].two_over_lr:.3g}, max lambda_H^1 "
        f"{np.mean([g.peaks_all['lambda_h1'] for g in groups[s]]):.3g}, threshold epochs "
        f"{','.join(str(g.cutoff_epoch) for g in groups[s])}, break-even epochs {','.join(str(g.break_even_epoch) for g in groups[s])}"
        for s in order)
    table = [[f"{row[0]} (to threshold)", *row[1:]] for row in rows] + [[f"{row[0]} (whole run)", *row[1:]] for row in rows_all]
    return [Claim(
        title, "mlp", paper, protocol, rule, verdict,
        f"to the threshold epoch {agree} of {logged} logged peaks move as predicted (whole run, reported: {agree_all} of "
        f"{logged_all}). {edge}." + (f" Left out: {why}." if excluded else " Every run passed break-even before its threshold epoch."),
        {"agree_to_threshold": agree, "logged": logged, "agree_whole_run": agree_all, "settings": order,
         "excluded_runs": len(excluded)},
        table, ["peak", *(label(s) for s in order), "as predicted"],
    )], records


# -- stiffness, frequency principle, CKA ------------------------------------------------------------------


def stiffness_claim(runs: Sequence[Run], model: str) -> Claim:
    title = "Between-class stiffness falls towards 0 while within-class stiffness stays positive"
    paper = ("Fort et al. 2019, stiffness: the cosine between loss gradients of examples of different classes falls to "
             "~0 during training, while for examples of the same class it stays positive.")
    protocol = f"MNIST-1D, model {model}; the clean runs of the sensitivity study, cos stiffness on the probe set every epoch."
    rule = ("on the mean over the clean runs: between-class cos stiffness at the last probe below half its maximum over "
            "training, and within-class cos stiffness positive at every probe and above the between-class value at the "
            "end; reproduced if both, partly if one")
    clean = [r for r in clean_probe_runs(runs, names.STIFFNESS_COS_DIFF) if r.has(names.STIFFNESS_COS_SAME)]
    if not clean:
        return Claim(title, model, paper, protocol, rule, INCONCLUSIVE, "no run logged the stiffness probe.")
    _, diff = mean_series(clean, names.STIFFNESS_COS_DIFF)
    _, same = mean_series(clean, names.STIFFNESS_COS_SAME)
    falls = diff[-1] < 0.5 * diff.max()
    positive = bool(np.all(same > 0)) and same[-1] > diff[-1]
    return Claim(
        title, model, paper, protocol, rule, REPRODUCED if falls and positive else PARTLY if falls or positive else NOT,
        f"between-class: max {diff.max():.3g}, last {diff[-1]:.3g}; within-class: min {same.min():.3g}, last {same[-1]:.3g} "
        f"(mean of {len(clean)} runs).",
        {"diff_max": diff.max(), "diff_last": diff[-1], "same_min": same.min(), "same_last": same[-1], "runs": len(clean)},
    )


def half_time(series: dict[int, float]) -> int | None:
    """The first epoch at which a falling quantity is at most half its first value (``None``: never).

    >>> half_time({-1: 1.0, 0: 0.8, 1: 0.5, 2: 0.2})
    1
    """
    first = series[min(series)]
    return next((e for e, v in sorted(series.items()) if v <= 0.5 * first), None)


def frequency_claim(runs: Sequence[Run], model: str) -> Claim:
    title = "Low-frequency error falls before high-frequency error (frequency principle)"
    paper = ("Xu et al. 2019, frequency principle: with a Gaussian filter in input space, the relative error of the "
             "low-frequency part of the fit falls earlier in training than that of the high-frequency part.")
    protocol = f"MNIST-1D, model {model}; the clean runs of the sensitivity study, filtering method on the probe set every epoch."
    rule = ("per run, the epoch at which each relative error first drops to half its value at the initial weights (never: "
            "later than any epoch); reproduced if the low-frequency error gets there strictly first in every run, partly "
            "if in at least half of the runs, not reproduced otherwise")
    clean = [r for r in clean_probe_runs(runs, names.FREQUENCY_ERROR_LOW) if r.has(names.FREQUENCY_ERROR_HIGH)]
    if not clean:
        return Claim(title, model, paper, protocol, rule, INCONCLUSIVE, "no run logged the frequency probe.")
    times = [(half_time(epoch_series(r, names.FREQUENCY_ERROR_LOW)), half_time(epoch_series(r, names.FREQUENCY_ERROR_HIGH)))
             for r in clean]
    inf = float("inf")
    first = [(low if low is not None else inf) < (high if high is not None else inf) for low, high in times]
    verdict = REPRODUCED if all(first) else PARTLY if 2 * sum(first) >= len(first) else NOT
    return Claim(
        title, model, paper, protocol, rule, verdict,
        "half-times (low, high) per run: " + ", ".join(f"seed {r.seed}: {lo}, {hi}" for r, (lo, hi) in zip(clean, times))
        + f"; low first in {sum(first)} of {len(first)}.",
        {"half_times": [[lo, hi] for lo, hi in times], "low_first": sum(first), "runs": len(first)},
    )


def representation_epochs(run: Run) -> list[int]:
    """The epochs with saved representations: the integers in the names under ``<run>/representations/``."""
    folder = run.path / "representations"
    found = set()
    for entry in folder.iterdir() if folder.is_dir() else ():
        digits = "".join(ch if ch.isdigit() else " " for ch in entry.name).split()
        if digits:
            found.add(int(digits[-1]))
    return sorted(found)


def float64(array: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array), dtype=torch.float64)


def default_cka_tools() -> tuple[Callable, Callable] | None:
    """The representation loader and linear CKA, if this checkout has them."""
    try:
        from critical_periods.probes.cka import linear_cka
        from critical_periods.probes.representation_probes import load_representations
    except ImportError:
        return None
    return load_representations, linear_cka


def cka_claim(runs: Sequence[Run], tools: tuple[Callable, Callable] | None = None) -> Claim:
    """Exploratory: after removal, is the earliest layer of the blur network further (lower CKA) from
    the same seed's clean network at the same epoch than that of the flip network?"""
    title = "After removal, blur leaves the earliest layer further from the clean network's than a flip does (exploratory)"
    paper = ("Not a claim of the papers: a Kornblith-style reading of Achille et al. (the blur network's early layers "
             "fail to reorganise). Linear CKA, Kornblith et al. 2019.")
    protocol = ("MNIST-1D MLP; blur, vertical flip and no deficit, removed at epoch 40, then 40 clean epochs, same seeds; the "
                "earliest layer's representation of the probe set at the last epoch saved by all three runs of a seed; "
                "debiased linear CKA, deficit run vs clean run.")
    rule = ("reproduced if CKA(blur, clean) < CKA(flip, clean) for every seed, partly if only for the mean over seeds, "
            "not reproduced otherwise; inconclusive without saved representations")
    tools = tools or default_cka_tools()
    by_seed: dict[int, dict[str, Run]] = defaultdict(dict)
    for r in plotted_runs(runs):
        by_seed[r.seed][r.deficit or "none"] = r
    pairs = []
    if tools is not None:
        load, cka = tools
        for seed, group in sorted(by_seed.items()):
            if not {"blur", "vertical_flip", "none"} <= set(group):
                continue
            common = set.intersection(*(set(representation_epochs(group[k])) for k in ("blur", "vertical_flip", "none")))
            if not common:
                continue
            epoch = max(common)
            reps = {k: load(group[k].path, epoch) for k in ("blur", "vertical_flip", "none")}
            layer = next(iter(reps["none"]))  # the loader lists layers in the order the network defines them
            values = [float(cka(float64(reps[k][layer]), float64(reps["none"][layer]), debiased=True))
                      for k in ("blur", "vertical_flip")]
            pairs.append((seed, epoch, layer, *values))
    if not pairs:
        return Claim(title, "mlp", paper, protocol, rule, INCONCLUSIVE,
                     "no saved representations (the representation probe or CKA is not in this checkout, or the study was skipped).")
    blur, flip = np.array([p[3] for p in pairs]), np.array([p[4] for p in pairs])
    verdict = REPRODUCED if np.all(blur < flip) else PARTLY if blur.mean() < flip.mean() else NOT
    return Claim(
        title, "mlp", paper, protocol, rule, verdict,
        f"layer {pairs[0][2]}, CKA to the clean network: blur {blur.mean():.3f}, flip {flip.mean():.3f} (means of {len(pairs)} seeds).",
        {"blur": blur.tolist(), "vertical_flip": flip.tolist(), "seeds": [p[0] for p in pairs], "epochs": [p[1] for p in pairs]},
        [[str(p[0]), str(p[1]), p[2], f"{p[3]:.3f}", f"{p[4]:.3f}"] for p in pairs],
        ["seed", "epoch", "layer", "CKA blur vs clean", "CKA flip vs clean"],
    )
