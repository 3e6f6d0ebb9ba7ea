"""Each claim's per-seed paired effects, computed from the run records, judged by its rule in
``docs/rules.yaml`` (see ``rules.py``, ``statistics.py``) beside its negative control.

For every claim the condition and the control go through the same function: the control only swaps
which runs fill the condition's place (fresh-seed no-deficit runs, blur in place of a harmless
deficit) or reorders them (time order, setting labels), as the rule file says. Errors are fractions
in the run records and percentage points (pp) here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from critical_periods.record import metric_names as names
from critical_periods.analysis import break_even as be
from critical_periods.analysis.runs import Run, hidden_layers
from critical_periods.analysis.tables import plotted_runs
from critical_periods.reproduction.rules import Rule, Rules
from critical_periods.reproduction.statistics import Effects, Judgement, judge, paired_effects, per_seed
from critical_periods.vocabulary import Verdict

# Seeds 100 + s are the fresh-seed no-deficit controls of seed s (docs/rules.yaml).
CONTROL_SEED_OFFSET = 100
# A run that ends more than this far (fraction) below the matched clean runs' final training accuracy
# has not finished learning the real data (the validity condition of the rules that name it).
UNCONVERGED_GAP = 0.10
# Trajectory windows: the last WINDOW probes, the WINDOW probes up to the validation-loss minimum.
WINDOW = 5

SCHEDULE_WORDS = {"decaying": "lr x0.97 per epoch", "constant": "constant lr",
                  "restart": "lr x0.97 per epoch, restarted at removal"}


@dataclass
class Claim:
    """One rule applied to one model and lr schedule, with its control."""

    rule: Rule
    model: str
    schedule: str
    judgement: Judgement
    control: Judgement | None
    measured: str
    figure: str | None = None  # a figure file name under docs/figures/, if the study draws one
    numbers: dict[str, Any] = field(default_factory=dict)
    table: list[list[str]] = field(default_factory=list)
    headers: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.rule.id}/{self.model}/{self.schedule}"

    @property
    def status(self) -> Verdict:
        return self.judgement.status

    @property
    def title(self) -> str:
        return f"{self.rule.statement} ({self.model}, {SCHEDULE_WORDS.get(self.schedule, self.schedule)})"

    def to_json(self, rules_commit: str | None, figure_path: str | None = None) -> dict[str, Any]:
        head = self.judgement.headline
        record: dict[str, Any] = {
            "id": self.id, "rule_id": self.rule.id, "claim": self.title, "model": self.model, "schedule": self.schedule,
            "status": self.status.value, "verdict": self.status.value,
            "seeds": self.judgement.seeds,
            "effect": head.effect if head else None, "ci95": list(head.ci95) if head and head.ci95 else None,
            "unit": head.part.unit if head else None,
            "parts": [p.to_json() for p in self.judgement.parts],
            "holds": self.judgement.holds(),
            "rules_commit": rules_commit, "figure": figure_path,
            "paper": self.rule.paper, "reference": self.rule.reference, "statement": self.rule.statement, "rule": self.rule.text(),
            "amended_after_results": self.rule.amended_after_results,
            "history": [vars(a) for a in self.rule.history],
            "measured": self.measured, "numbers": jsonable(self.numbers), "table": self.table, "headers": self.headers,
        }
        if self.control is not None and self.rule.control is not None:
            control_head = self.control.headline
            record["control"] = {
                "name": self.rule.control.name, "construction": self.rule.control.construction,
                "status": self.control.status.value, "seeds": self.control.seeds,
                "effect": control_head.effect if control_head else None,
                "ci95": list(control_head.ci95) if control_head and control_head.ci95 else None,
                "parts": [p.to_json() for p in self.control.parts],
            }
        return jsonable(record)


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
    if isinstance(value, Verdict):
        return value.value
    return value


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:+.{digits}g}"


def interval_text(j: Judgement | None) -> str:
    """``+12.2 [+10.1, +14.0] pp (5 seeds)`` for each part."""
    if j is None or not j.parts:
        return "-"
    return "; ".join(
        f"{p.part.name}: {fmt(p.effect)} [{fmt(p.ci95[0]) if p.ci95 else '-'}, {fmt(p.ci95[1]) if p.ci95 else '-'}] "
        f"{p.part.unit} ({p.n} seeds) -> {p.status.value}" + (f" ({p.reason})" if p.reason else "")
        for p in j.parts)


def model_of(run: Run) -> str:
    return (run.model or "?").lower().replace("conv1dnet", "conv1d")


# -- reading the records --------------------------------------------------------------------------------


def errors_pp(runs: Sequence[Run], kind: str, **match: Any) -> dict[int, float]:
    """``{seed: final test error in pp}`` of the completed ``kind`` runs whose attributes equal ``match``
    (e.g. ``length=60``, ``onset=0``)."""
    out = {}
    for r in plotted_runs(runs):
        if (r.deficit or "none") == kind and all(getattr(r, key) == value for key, value in match.items()):
            out[r.seed] = 100 * r.test_error
    return out


def shifted(values: Mapping[int, float]) -> dict[int, float]:
    """The fresh-seed control runs keyed by the seed they control: ``{s: values[100 + s]}``."""
    return {s - CONTROL_SEED_OFFSET: v for s, v in values.items() if s >= CONTROL_SEED_OFFSET}


def judged_seeds(values: Mapping[int, float]) -> dict[int, float]:
    return {s: v for s, v in values.items() if s < CONTROL_SEED_OFFSET}


def final_train_acc(run: Run) -> float | None:
    if run.summary is not None and run.summary.final.get(names.FINAL_TRAIN_ACC) is not None:
        return run.summary.final[names.FINAL_TRAIN_ACC]
    values = [row[names.TRAIN_ACC] for row in run.metrics if row.get(names.TRAIN_ACC) is not None]
    return values[-1] if values else None


def unconverged(runs: Sequence[Run], kind: str, length: int) -> str | None:
    """The validity condition: a ``kind`` run ending > UNCONVERGED_GAP below the matched clean runs'
    mean final training accuracy, in words (``None``: all converged)."""
    ok = [r for r in plotted_runs(runs) if r.seed is not None and r.seed < CONTROL_SEED_OFFSET and r.length == length]
    clean = [a for r in ok if (r.deficit or "none") == "none" for a in [final_train_acc(r)] if a is not None]
    runs_of_kind = [(r.seed, final_train_acc(r)) for r in ok if r.deficit == kind]
    if not clean or not runs_of_kind:
        return None
    floor = float(np.mean(clean)) - UNCONVERGED_GAP
    low = [(s, a) for s, a in runs_of_kind if a is None or a < floor]
    if not low:
        return None
    return (f"{kind} runs of seed(s) {', '.join(str(s) for s, _ in low)} ended at "
            f"{', '.join('-' if a is None else f'{100 * a:.1f}%' for _, a in low)} training accuracy, more than "
            f"{100 * UNCONVERGED_GAP:.0f} pp below the clean runs' {100 * (floor + UNCONVERGED_GAP):.1f}%")


def epoch_series(run: Run, key: str) -> dict[int, float]:
    """``{epoch: value}`` of a probe metric; -1 is the probe of the initial weights (step 0)."""
    return {int(r["epoch"]) if r["step"] else -1: r[key] for r in run.metrics
            if r.get(key) is not None and "epoch" in r and "step" in r}


def val_series(run: Run, key: str = names.VAL_ACC) -> dict[int, float]:
    return {int(r["epoch"]): r[key] for r in run.metrics if r.get(key) is not None and "epoch" in r}


def shuffled_in_time(series: Mapping[int, float], seed: int, random_state: int) -> dict[int, float]:
    """The same values at a fixed random permutation of the epochs (the time-order control)."""
    epochs = sorted(series)
    order = np.random.default_rng([random_state, seed]).permutation(len(epochs))
    return {e: series[epochs[i]] for e, i in zip(epochs, order)}


def clean_probe_runs(runs: Sequence[Run], key: str, onset: int = 0) -> dict[int, Run]:
    """``{seed: run}`` of the completed no-deficit runs at ``onset`` that logged ``key``."""
    return {r.seed: r for r in plotted_runs(runs) if (r.deficit or "none") == "none" and (r.onset or 0) == onset and r.has(key)}


# -- judging -----------------------------------------------------------------------------------------------


@dataclass
class Judge:
    """The rules and the bootstrap settings every claim is judged with."""

    rules: Rules

    def __call__(self, rule_id: str, effects: Effects | Mapping[str, Effects], invalid: str | None = None) -> Judgement:
        return judge(self.rules[rule_id], effects, random_state=self.rules.random_state,
                     n_resamples=self.rules.n_resamples, invalid=invalid)

    def claim(self, rule_id: str, model: str, schedule: str, condition: Effects | Mapping[str, Effects],
              control: Effects | Mapping[str, Effects] | None, measured: str, invalid: str | None = None, **extra: Any) -> Claim:
        rule = self.rules[rule_id]
        judgement = self(rule_id, condition, invalid)
        if control is None and rule.kind == "judged":  # no runs to build it from: reported as inconclusive
            control = {p.name: per_seed({}, "no runs for the control") for p in rule.parts}
        control_judgement = self(rule_id, control) if rule.kind == "judged" else None
        text = f"{measured} Claim: {interval_text(judgement)}."
        if control_judgement is not None:
            text += f" Control ({rule.control.name}): {interval_text(control_judgement)}."
        return Claim(rule, model, schedule, judgement, control_judgement, text, **extra)


# -- Achille et al.: removal curves ------------------------------------------------------------------------


def removal_lengths(runs: Sequence[Run], kind: str) -> list[int]:
    return sorted({r.length for r in plotted_runs(runs) if r.deficit == kind and r.length})


def harm(runs: Sequence[Run], kind: str, length: int, clean_kind: str = "none") -> tuple[Effects, Effects]:
    """Per seed, ``kind`` removed at ``length`` minus the matched no-deficit run (same length and seed);
    and the same with the fresh-seed no-deficit runs in ``kind``'s place (the control)."""
    clean = errors_pp(runs, clean_kind, length=length)
    condition = paired_effects(judged_seeds(errors_pp(runs, kind, length=length)), judged_seeds(clean))
    control = paired_effects(shifted(clean), judged_seeds(clean))
    return condition, control


def difference(a: Effects, b: Effects) -> Effects:
    """Per seed, a's effect minus b's (the seeds both have)."""
    return paired_effects(dict(zip(a.seeds, a.values)), dict(zip(b.seeds, b.values)))


def removal_table(runs: Sequence[Run]) -> tuple[list[str], list[list[str]]]:
    """Mean final test error (pp) and seeds per kind and removal epoch; the matched clean runs too."""
    kinds = sorted({r.deficit or "none" for r in plotted_runs(runs)})
    lengths = sorted({r.length for r in plotted_runs(runs) if r.length is not None})
    rows = []
    for kind in kinds:
        cells = []
        for length in lengths:
            errors = judged_seeds(errors_pp(runs, kind, length=length))
            cells.append(f"{np.mean(list(errors.values())):.1f} ({len(errors)})" if errors else "-")
        rows.append([kind, *cells])
    return ["deficit", *(f"removed at {n}: test error % (seeds)" for n in lengths)], rows


def removal_claims(judge_: Judge, runs: Sequence[Run], model: str, schedule: str, figure: str | None) -> list[Claim]:
    """Blur, flip (decaying lr only), label permutation and noise for one removal study."""
    blur_lengths = removal_lengths(runs, "blur")
    claims = []
    headers, table = removal_table(runs)
    if blur_lengths:
        late, early = max(blur_lengths), min(blur_lengths)
        lasting, lasting_control = harm(runs, "blur", late)
        early_harm, early_control = harm(runs, "blur", early)
        parts = {"lasting harm": lasting, "grows with the removal epoch": difference(lasting, early_harm)}
        control = {"lasting harm": lasting_control,
                   "grows with the removal epoch": difference(lasting_control, early_control)}
        measured = f"Blur removed at epochs {', '.join(map(str, blur_lengths))}, matched no-deficit runs of each length."
    else:
        late = None
        parts = {"lasting harm": per_seed({}), "grows with the removal epoch": per_seed({})}
        control, measured = None, "No blur runs in this study."
    claims.append(judge_.claim("achille-blur-lasting", model, schedule, parts, control, measured,
                               figure=figure, table=table, headers=headers))
    for kind, rule_id in (("vertical_flip", "achille-flip-no-critical-period"),
                          ("label_permutation", "achille-permutation-no-critical-period")):
        if schedule not in judge_.rules[rule_id].schedules:
            continue
        lengths = removal_lengths(runs, kind)
        if not lengths:
            claims.append(judge_.claim(rule_id, model, schedule, per_seed({}), None, f"No {kind} runs in this study.", figure=figure))
            continue
        effect, _ = harm(runs, kind, max(lengths))
        blur_in_place, _ = harm(runs, "blur", max(lengths))
        invalid = unconverged(runs, kind, max(lengths)) if judge_.rules[rule_id].validity else None
        claims.append(judge_.claim(rule_id, model, schedule, effect, blur_in_place,
                                   f"{kind} removed at epoch {max(lengths)} against the matched no-deficit runs.",
                                   invalid=invalid, figure=figure))
    noise_lengths = removal_lengths(runs, "noise")
    if noise_lengths and late in noise_lengths:
        noise = judged_seeds(errors_pp(runs, "noise", length=late))
        blur = judged_seeds(errors_pp(runs, "blur", length=late))
        clean = errors_pp(runs, "none", length=late)
        claims.append(judge_.claim(
            "achille-noise-milder-than-blur", model, schedule, paired_effects(noise, blur),
            paired_effects(shifted(clean), judged_seeds(clean)),
            f"noise and blur removed at epoch {late}, same seeds.", invalid=unconverged(runs, "noise", late), figure=figure))
    else:
        claims.append(judge_.claim("achille-noise-milder-than-blur", model, schedule, per_seed({}), None,
                                   "No noise runs removed at blur's latest epoch in this study.", figure=figure))
    return claims


# -- Achille et al.: sensitivity window, Fisher, depth --------------------------------------------------------


def window_harm(runs: Sequence[Run], onset: int, kind: str = "blur") -> tuple[Effects, Effects]:
    clean = errors_pp(runs, "none", onset=onset)
    condition = paired_effects(judged_seeds(errors_pp(runs, kind, onset=onset)), judged_seeds(clean))
    control = paired_effects(shifted(clean), judged_seeds(clean))
    return condition, control


def sensitivity_claim(judge_: Judge, runs: Sequence[Run], model: str, schedule: str, figure: str | None) -> Claim:
    onsets = sorted({r.onset for r in plotted_runs(runs) if r.deficit == "blur" and r.onset is not None})
    if len(onsets) < 2:
        empty = per_seed({})
        return judge_.claim("achille-sensitivity-window", model, schedule,
                            {"early windows do harm": empty, "late windows do less": empty}, None,
                            "Fewer than two window onsets in this study.", figure=figure)
    first, last = onsets[0], onsets[-1]
    early, early_control = window_harm(runs, first)
    late, late_control = window_harm(runs, last)
    table = []
    for onset in onsets:
        effect, _ = window_harm(runs, onset)
        j = judge_("achille-sensitivity-window", {"early windows do harm": effect, "late windows do less": effect})
        head = j.parts[0]
        table.append([str(onset), fmt(head.effect), f"[{fmt(head.ci95[0])}, {fmt(head.ci95[1])}]" if head.ci95 else "-", str(head.n)])
    length = next((r.length for r in plotted_runs(runs) if r.deficit == "blur"), None)
    return judge_.claim(
        "achille-sensitivity-window", model, schedule,
        {"early windows do harm": early, "late windows do less": difference(early, late)},
        {"early windows do harm": early_control, "late windows do less": difference(early_control, late_control)},
        f"A {length}-epoch blur window at onsets {', '.join(map(str, onsets))}; each against the same seed's no-deficit run "
        "of the same onset and length.", figure=figure, table=table,
        headers=["onset", "sensitivity (pp, paired)", "95% interval", "seeds"])


def window_means(series: Mapping[int, float], epochs_trained: int) -> tuple[float, float, float]:
    """(value at the initial weights, mean over epochs 0..E/4-1, mean over the last E/4 epochs)."""
    quarter = max(1, epochs_trained // 4)
    early = [v for e, v in series.items() if 0 <= e < quarter]
    late = [v for e, v in series.items() if e >= epochs_trained - quarter]
    init = series.get(-1, float("nan"))
    return init, float(np.mean(early)) if early else float("nan"), float(np.mean(late)) if late else float("nan")


def fisher_parts(traces: Mapping[int, Mapping[int, float]], val: Mapping[int, Mapping[int, float]]) -> dict[str, Effects]:
    rise, fall, acc = {}, {}, {}
    for seed, trace in traces.items():
        epochs = max(trace) + 1
        init, early, late = window_means(trace, epochs)
        rise[seed] = np.log(early / init) if init > 0 and early > 0 else None
        fall[seed] = np.log(early / late) if early > 0 and late > 0 else None
        _, acc_early, acc_late = window_means(val[seed], epochs)
        acc[seed] = 100 * (acc_late - acc_early)
    return {"rises": per_seed(rise), "falls": per_seed(fall), "accuracy still improves": per_seed(acc)}


def fisher_claim(judge_: Judge, runs: Sequence[Run], model: str, figure: str | None) -> Claim:
    clean = {s: r for s, r in clean_probe_runs(runs, names.FISHER_TRACE).items() if s < CONTROL_SEED_OFFSET}
    traces = {s: epoch_series(r, names.FISHER_TRACE) for s, r in clean.items()}
    vals = {s: val_series(r) for s, r in clean.items()}
    traces = {s: t for s, t in traces.items() if -1 in t and len(t) > 4 and vals[s]}
    state = judge_.rules.random_state
    shuffled_traces = {s: shuffled_in_time(t, s, state) for s, t in traces.items()}
    shuffled_vals = {s: shuffled_in_time(vals[s], s, state) for s in traces}
    condition = fisher_parts(traces, vals)
    peaks = {s: max(t, key=t.get) for s, t in traces.items()}
    return judge_.claim(
        "achille-fisher-rise-fall", model, "decaying", condition,
        fisher_parts(shuffled_traces, shuffled_vals) if traces else None,
        f"Exact Fisher trace of {len(traces)} clean runs; peak epochs per seed: "
        + (", ".join(f"seed {s}: {e}" for s, e in sorted(peaks.items())) or "-") + ".",
        figure=figure, numbers={"peak_epoch": peaks})


def depth_claim(judge_: Judge, runs: Sequence[Run], figure: str | None) -> Claim:
    depths = sorted({d for r in plotted_runs(runs) if (d := hidden_layers(r)) is not None})
    if len(depths) < 2:
        return judge_.claim("achille-depth", "mlp", "decaying", per_seed({}), None, "Fewer than two depths in this study.")
    by_depth = {d: [r for r in runs if hidden_layers(r) == d] for d in (depths[0], depths[-1])}
    length = max((r.length or 0) for r in plotted_runs(runs))
    (deep, deep_control), (shallow, shallow_control) = (harm(by_depth[depths[-1]], "blur", length),
                                                        harm(by_depth[depths[0]], "blur", length))
    table = [[str(d), fmt(float(np.mean(e.values)) if e.n else None), str(e.n)]
             for d, e in ((depths[0], shallow), (depths[-1], deep))]
    return judge_.claim("achille-depth", "mlp", "decaying", difference(deep, shallow), difference(deep_control, shallow_control),
                        f"Blur removed at epoch {length}; MLPs with {depths[0]} and {depths[-1]} hidden layers.",
                        figure=figure, table=table, headers=["hidden layers", "lasting harm (pp, paired)", "seeds"])


# -- Fort et al.: stiffness; Xu et al.: frequency principle ----------------------------------------------


def overfitting_drop(stiffness: Mapping[int, float], val_loss: Mapping[int, float]) -> float | None:
    """(mean within-class stiffness over the last WINDOW probes - its mean over the WINDOW probes up to
    the validation-loss minimum t*) / |the latter|; ``None`` if t* is within the last WINDOW epochs."""
    if not stiffness or not val_loss:
        return None
    t_star = min(val_loss, key=val_loss.get)
    last_epoch = max(val_loss)
    if t_star > last_epoch - WINDOW:
        return None
    probes = sorted(e for e in stiffness if e >= 0)
    before = [stiffness[e] for e in probes if t_star - WINDOW < e <= t_star]
    after = [stiffness[e] for e in probes[-WINDOW:]]
    if not before or not after or np.mean(before) == 0:
        return None
    return float((np.mean(after) - np.mean(before)) / abs(np.mean(before)))


def stiffness_overfitting_claim(judge_: Judge, runs: Sequence[Run], model: str, figure: str | None) -> Claim:
    clean = {s: r for s, r in clean_probe_runs(runs, names.STIFFNESS_COS_SAME).items() if s < CONTROL_SEED_OFFSET}
    state = judge_.rules.random_state
    condition, control, t_stars = {}, {}, {}
    for seed, run in clean.items():
        series, loss = epoch_series(run, names.STIFFNESS_COS_SAME), val_series(run, names.VAL_LOSS)
        condition[seed] = overfitting_drop(series, loss)
        control[seed] = overfitting_drop(shuffled_in_time(series, seed, state), loss)
        t_stars[seed] = min(loss, key=loss.get) if loss else None
    never = [s for s, v in condition.items() if v is None]
    note = f"seeds {never} never overfit before their last {WINDOW} epochs" if never else ""
    return judge_.claim("fort-stiffness-overfitting", model, "decaying", per_seed(condition, note), per_seed(control),
                        f"Clean runs; epoch of the lowest validation loss per seed: {t_stars}.", figure=figure,
                        numbers={"t_star": t_stars})


def mean_probe(run: Run, key: str) -> float | None:
    values = [v for e, v in epoch_series(run, key).items() if e >= 0]
    return float(np.mean(values)) if values else None


def stiffness_lr_claim(judge_: Judge, runs: Sequence[Run], figure: str | None) -> Claim:
    lrs = sorted({r.lr for r in plotted_runs(runs) if r.lr is not None and r.has(names.STIFFNESS_COS_DIFF)})
    if len(lrs) < 2:
        return judge_.claim("fort-stiffness-learning-rate", "mlp", "constant", per_seed({}), None, "Fewer than two learning rates.")
    small, large = lrs[0], lrs[-1]
    stiff = {lr: {r.seed: mean_probe(r, names.STIFFNESS_COS_DIFF) for r in plotted_runs(runs) if r.lr == lr} for lr in (small, large)}
    return judge_.claim(
        "fort-stiffness-learning-rate", "mlp", "constant",
        paired_effects(judged_seeds(stiff[large]), judged_seeds(stiff[small])),
        paired_effects(shifted(stiff[small]), judged_seeds(stiff[small])),
        f"Mean between-class cos stiffness over training at lr {large:g} vs {small:g}.", figure=figure)


def half_time(series: dict[int, float], never: int) -> int:
    """The first epoch at which a falling quantity is at most half its first value (``never`` if not).

    >>> half_time({-1: 1.0, 0: 0.8, 1: 0.5, 2: 0.2}, never=99)
    1
    """
    first = series[min(series)]
    return next((e for e, v in sorted(series.items()) if v <= 0.5 * first), never)


def frequency_claim(judge_: Judge, runs: Sequence[Run], model: str, figure: str | None) -> Claim:
    clean = clean_probe_runs(runs, names.FREQUENCY_ERROR_LOW)
    low, high = {}, {}
    for seed, run in clean.items():
        never = (run.epochs_trained or max(epoch_series(run, names.FREQUENCY_ERROR_LOW)) + 1) + 1
        low[seed] = half_time(epoch_series(run, names.FREQUENCY_ERROR_LOW), never)
        if run.has(names.FREQUENCY_ERROR_HIGH):
            high[seed] = half_time(epoch_series(run, names.FREQUENCY_ERROR_HIGH), never)
    return judge_.claim("xu-frequency-principle", model, "decaying",
                        paired_effects(judged_seeds(high), judged_seeds(low)),
                        paired_effects(shifted(low), judged_seeds(low)),
                        "Half-times (low, high) per seed: " + ", ".join(
                            f"{s}: ({low[s]}, {high.get(s, '-')})" for s in sorted(judged_seeds(low))) + ".",
                        figure=figure, numbers={"half_times": {s: [low[s], high.get(s)] for s in judged_seeds(low)}})


# -- Jastrzebski et al.: break-even ---------------------------------------------------------------------------


def break_even_record(study: str, result: be.RunPeaks) -> dict[str, Any]:
    """One row of ``reproduction.json``'s ``break_even_runs``."""
    run = result.run
    return jsonable({
        "study": study, "lr": run.lr, "batch_size": run.batch_size, "seed": run.seed,
        "max_lambda_h1": result.peaks_all.get("lambda_h1"), "two_over_lr": result.two_over_lr,
        "passed_break_even": result.passed_break_even, "break_even_epoch": result.break_even_epoch,
        "threshold_epoch": result.cutoff_epoch, "compared": result.passed_break_even,
        "peaks_to_threshold": result.peaks, "peaks_whole_run": result.peaks_all,
    })


def break_even_statistics(result: be.RunPeaks) -> dict[str, float | None]:
    """The paper's statistics of one run past break-even (``None`` where not logged)."""
    rows, epoch = result.run.metrics, result.break_even_epoch
    after = [r[names.COND_K] for r in rows if r.get(names.COND_K) is not None and "step" in r and r.get("epoch", 0) >= epoch]
    return {
        "max lambda_H^1 over the whole run": be.peak(rows, names.LAMBDA_H1),
        "max lambda_K^1 up to break-even": be.peak(rows, names.LAMBDA_K1, until_epoch=epoch),
        "max lambda_K^1 over the whole run": be.peak(rows, names.LAMBDA_K1),
        "conditioning of K after break-even": float(np.mean(after)) if after else None,
    }


def log_slope(points: Sequence[tuple[float, float | None]]) -> float | None:
    """The least-squares slope of log(y) against log(x) over the points with y > 0; ``None`` below 3."""
    ok = [(x, y) for x, y in points if y is not None and y > 0 and x > 0]
    if len(ok) < 3:
        return None
    x, y = np.log([p[0] for p in ok]), np.log([p[1] for p in ok])
    return float(np.polyfit(x, y, 1)[0])


def slopes(results: Sequence[be.RunPeaks], noise: Callable[[Run], float], part: str,
           shuffle: bool, random_state: int) -> dict[int, float | None]:
    by_seed: dict[int, list[be.RunPeaks]] = defaultdict(list)
    for r in results:
        by_seed[r.run.seed].append(r)
    out = {}
    for seed, group in by_seed.items():
        x = [noise(r.run) for r in group]
        if shuffle:
            x = [x[i] for i in np.random.default_rng([random_state, seed]).permutation(len(x))]
        out[seed] = log_slope([(xi, break_even_statistics(r)[part]) for xi, r in zip(x, group)])
    return out


def break_even_claim(judge_: Judge, runs: Sequence[Run], setting: str, study: str,
                     figure: str | None) -> tuple[Claim, list[dict[str, Any]]]:
    """Conjecture 1 (``setting="lr"``) or 2 (``"batch_size"``): per seed, log-log slopes over the
    settings of the runs past break-even, against SGD's noise (lr, or 1 / batch size)."""
    rule_id = "jastrzebski-break-even-lr" if setting == "lr" else "jastrzebski-break-even-batch"
    results = be.compare(be.break_even_runs(runs), be.PAPER_TRAIN_ACC_THRESHOLD)
    records = [break_even_record(study, r) for r in results]
    passed = [r for r in results if r.passed_break_even and r.run.seed is not None]
    noise = (lambda run: run.lr) if setting == "lr" else (lambda run: 1.0 / run.batch_size)
    state = judge_.rules.random_state
    parts = [p.name for p in judge_.rules[rule_id].parts]
    condition = {p: per_seed(slopes(passed, noise, p, False, state)) for p in parts}
    control = {p: per_seed(slopes(passed, noise, p, True, state)) for p in parts}
    left_out = [r for r in results if not r.passed_break_even]
    settings = sorted({getattr(r.run, setting) for r in passed})
    table = []
    for value in settings:
        group = [break_even_statistics(r) for r in passed if getattr(r.run, setting) == value]
        table.append([f"{value:g}", str(len(group)), *(fmt(float(np.mean([g[p] for g in group if g[p] is not None])))
                                                      if any(g[p] is not None for g in group) else "-" for p in parts)])
    measured = (f"{len(passed)} runs past break-even at {setting} {', '.join(f'{v:g}' for v in settings)}"
                + ("; left out (never reached 0.5 x 2/lr): " + ", ".join(
                    f"{setting} {getattr(r.run, setting):g} seed {r.run.seed}" for r in left_out) if left_out else "") + ".")
    claim = judge_.claim(rule_id, "mlp", "constant", condition, control, measured, figure=figure, table=table,
                         headers=[setting, "runs", *(f"mean {p}" for p in parts)])
    return claim, records


# -- exploratory: CKA deficit vs clean ---------------------------------------------------------------------


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


def default_cka_tools() -> tuple[Callable, Callable]:
    """The project's representation loader and linear CKA."""
    from critical_periods.probes.cka import linear_cka
    from critical_periods.probes.representations import load_representations

    return load_representations, linear_cka


def cka_values(runs: Sequence[Run], tools: tuple[Callable, Callable] | None = None) -> list[tuple[int, int, str, float, float]]:
    """Per seed: (seed, epoch, earliest layer, CKA(blur, clean), CKA(flip, clean)) at the last epoch
    all three runs of the seed saved."""
    load, cka = tools or default_cka_tools()
    by_seed: dict[int, dict[str, Run]] = defaultdict(dict)
    for r in plotted_runs(runs):
        by_seed[r.seed][r.deficit or "none"] = r
    out = []
    for seed, group in sorted(by_seed.items()):
        if not {"blur", "vertical_flip", "none"} <= set(group):
            continue
        common = set.intersection(*(set(representation_epochs(group[k])) for k in ("blur", "vertical_flip", "none")))
        if not common:
            continue
        epoch = max(common)
        reps = {k: load(group[k].path, epoch) for k in ("blur", "vertical_flip", "none")}
        layer = next(iter(reps["none"]))  # the loader lists layers in the order the network defines them
        blur, flip = (float(cka(float64(reps[k][layer]), float64(reps["none"][layer]), debiased=True))
                      for k in ("blur", "vertical_flip"))
        out.append((seed, epoch, layer, blur, flip))
    return out


def cka_claim(judge_: Judge, runs: Sequence[Run], figure: str | None,
              tools: tuple[Callable, Callable] | None = None) -> Claim:
    values = cka_values(runs, tools)
    effects = paired_effects({v[0]: v[4] for v in values}, {v[0]: v[3] for v in values})
    return judge_.claim("cka-deficit-vs-clean", "mlp", "decaying", effects, None,
                        f"Layer {values[0][2] if values else '-'}; CKA to the clean network per seed (blur, flip): "
                        + (", ".join(f"{v[0]}: ({v[3]:.3f}, {v[4]:.3f})" for v in values) or "none saved") + ".",
                        figure=figure, table=[[str(v[0]), str(v[1]), v[2], f"{v[3]:.3f}", f"{v[4]:.3f}"] for v in values],
                        headers=["seed", "epoch", "layer", "CKA blur vs clean", "CKA flip vs clean"])
