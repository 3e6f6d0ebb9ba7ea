"""Figures: labels in words from the resolved configs, the epoch axis, the break-even diagnostics,
and the probe figures (stiffness, frequency, CKA). Figures are drawn from a real tiny sweep (train()
with the break-even probes) and from runs with hand-written metrics rows whose answer is known."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
import pytest
from matplotlib.collections import PolyCollection, QuadMesh
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.text import Text

from critical_periods.record import metric_names as mn
from critical_periods.analysis import figures, labels, probe_figures
from critical_periods.analysis.labels import deficit_words, run_words, setting_words, value_words
from critical_periods.analysis.plotting import NoData, group_runs
from critical_periods.record.summary import Summary
from critical_periods.analysis.runs import Run, load_sweep, varying_settings

from test_analyze import run_job

STEPS = 10  # steps per epoch of the hand-written runs


def hand_run(job: str, rows: list[dict], seed: int = 0, lr: float = 0.1, batch_size: int = 128,
             deficit: str = "none", onset: int = 0, length: int = 0) -> Run:
    """A completed run built directly, its overrides spelled as Hydra would (they must not reach a figure)."""
    config = {"optim": {"lr": lr}, "data": {"batch_size": batch_size}, "seed": seed,
              "deficit": {"onset": onset, "length": length}, "logger": {"project": "p"}}
    summary = {"status": "completed", "deficit": deficit, "onset": onset, "length": length, "seed": seed,
               "final/test_error": 0.5, "config": config}
    overrides = (f"optim.lr={lr}", f"data.batch_size={batch_size}", f"seed={seed}", "sweep=removal", "logger=none")
    return Run(job, Path(job), overrides, "completed", Summary.from_json(summary), config, rows)


def epoch_rows(epochs: int, values: dict[str, list[float]], train_acc: list[float] | None = None) -> list[dict]:
    """Probe rows at step 0 and at the end of each epoch (``values[key][e]``: after e epochs), and
    ``train/acc`` logged with the epoch's last batch step, as training writes them."""
    rows = []
    for e in range(epochs + 1):
        step = STEPS * e
        rows.append({"step": step, "epoch": max(e - 1, 0), **{k: v[e] for k, v in values.items()}})
        if e and train_acc is not None:
            rows.append({"step": step - 1, "epoch": e - 1, mn.TRAIN_ACC: train_acc[e - 1]})
    return rows


def texts(fig: Figure) -> list[str]:
    """Every piece of text drawn: titles, axis and tick labels, legend entries, annotations."""
    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


OVERRIDE = re.compile(r"\w=\w|\b(?:optim|data|deficit|model|schedule|probes|logger|sweep)\.\w")


def assert_words_only(fig: Figure) -> None:
    """No override string (``key=value``, dotted config keys) and no raw snake_case key outside maths."""
    for text in texts(fig):
        plain = re.sub(r"\$[^$]*\$", "", text)
        assert not OVERRIDE.search(plain), text
        assert "_" not in plain, text


def assert_integer_epoch_ticks(fig: Figure) -> None:
    checked = 0
    for ax in fig.axes:
        if "epoch" in ax.get_xlabel() and ax.get_xscale() == "linear":
            low, high = ax.get_xlim()
            ticks = [t for t in ax.get_xticks() if low - 1e-9 <= t <= high + 1e-9]
            assert ticks and all(float(t).is_integer() for t in ticks), (ax.get_xlabel(), ticks)
            checked += 1
    assert checked


def legend_labels(ax) -> list[str]:
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


def vertical_lines(ax) -> list[tuple[float, str]]:
    return [(float(line.get_xdata()[0]), line.get_color()) for line in ax.get_lines()
            if len(line.get_xdata()) == 2 and line.get_xdata()[0] == line.get_xdata()[1] and line.get_linestyle() == ":"]


# -- words from configs --------------------------------------------------------------------------------


def test_settings_and_deficits_in_words():
    assert setting_words("data.batch_size", 32) == "batch size 32"
    assert setting_words("optim.lr", 0.1) == "learning rate 0.1"
    assert setting_words("optim.weight_decay", 5e-4) == "weight decay 0.0005"
    assert setting_words("model.widths", [512, 512]) == "hidden widths [512, 512]"
    assert setting_words("trainer.some_new_key", 3) == "some new key 3"  # no entry: last part, spaces
    assert value_words(1e-8) == "1e-08"
    kinds = {kind: deficit_words(hand_run("j", [], deficit=kind, onset=onset, length=4))
             for kind, onset in [("vertical_flip", 0), ("label_permutation", 2), ("blur", 0)]}
    assert kinds == {"vertical_flip": "vertical flip until epoch 4", "label_permutation": "label permutation in epochs 2-6",
                     "blur": "blur until epoch 4"}
    assert deficit_words(hand_run("j", [], deficit="blur", length=0)) == "no deficit"  # length 0 is the baseline


def test_groups_are_settings_in_words_sorted_by_value_and_pool_seeds():
    runs = [hand_run(f"b{b}s{s}", [], seed=s, batch_size=b) for b in (512, 32, 128) for s in (0, 1)]
    assert varying_settings(runs) == ["data.batch_size"]
    groups = group_runs(runs)
    assert [g.label for g in groups] == ["batch size 32", "batch size 128", "batch size 512"]  # numeric, not text order
    assert [sorted(r.seed for r in g.runs) for g in groups] == [[0, 1]] * 3
    with_deficit = group_runs([*runs[:2], hand_run("blur", [], deficit="blur", onset=2, length=3, batch_size=512)])
    assert [(g.label, g.window, g.colour) for g in with_deficit] == [
        ("no deficit", None, "black"), ("blur in epochs 2-5", (2, 5), "C0")]  # batch size 512 for all: not said
    assert run_words(runs[0], [], with_deficit=False) == "all runs"


# -- a real tiny sweep ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_sweep(tmp_path_factory) -> list[Run]:
    """Real tiny runs: no deficit at two learning rates with every break-even probe and early-step
    probes; blur windows at onsets 0 and 1 (lr 0.05, Fisher probe): every paper figure has data."""
    root = tmp_path_factory.mktemp("sweep")
    for lr in (0.05, 0.2):
        run_job(root, f"optim.lr={lr}", ["probes=full", "probes.probe_size=64", "probes.covariance.batches=4", "probes.early_steps=4",
                                         "probes.early_until_step=10", f"optim.lr={lr}", "deficit.length=0",
                                         "schedule.epochs_after_deficit=2"])
    for onset in (0, 1):
        run_job(root, f"window/deficit.onset={onset}", ["probes=fisher", "optim.lr=0.05", f"deficit.onset={onset}",
                                                         "deficit.length=1", "schedule.epochs_after_deficit=2"])
    return load_sweep(root)


def test_real_sweep_figures_are_in_words_with_integer_epoch_ticks(real_sweep):
    for name, draw in figures.FIGURES.items():
        try:
            fig = draw(real_sweep)
        except NoData:
            assert name not in {"error_vs_removal.png", "sensitivity_vs_onset.png", "fisher_trace.png",
                                "fisher_share.png", "break_even.png"}, name
            continue
        assert_words_only(fig)
        assert_integer_epoch_ticks(fig)
    early = [r for r in real_sweep if r.has(mn.LAMBDA_K1)]
    for draw in (figures.fisher_trace, figures.break_even):
        assert any(ax.get_xscale() == "symlog" for ax in draw(early).axes)  # the early probes have their panel
    fig = figures.break_even(early)
    labels = {label.split(" (")[0] for ax in fig.axes for label in legend_labels(ax)}
    assert {"learning rate 0.05", "learning rate 0.2"} <= labels
    titles = {ax.get_title() for ax in fig.axes}
    assert {"top Hessian eigenvalue $\\lambda_H^1$", "top eigenvalue of the gradient covariance $\\lambda_K^1$",
            "gradient covariance trace tr K", "training accuracy"} <= titles


def test_break_even_threshold_line_per_run_at_the_first_epoch_over_it(real_sweep):
    # The tiny runs' own training accuracy decides where the line is: pick a threshold each reaches.
    real_sweep = [r for r in real_sweep if r.has(mn.LAMBDA_K1)]
    accs = {r.lr: [row[mn.TRAIN_ACC] for row in r.metrics if mn.TRAIN_ACC in row] for r in real_sweep}
    threshold = min(max(a) for a in accs.values())
    expected = {lr: next(e for e, a in enumerate(acc) if a >= threshold) + 1.0 for lr, acc in accs.items()}
    fig = figures.break_even(real_sweep, threshold=threshold)
    colours = {}
    for ax in fig.axes:
        for label, line in zip(legend_labels(ax), ax.get_legend().get_lines() if ax.get_legend() else []):
            colours.setdefault(label.split(" (")[0], line.get_color())
    for lr, x in expected.items():
        colour = colours[f"learning rate {lr}"]
        for ax in fig.axes:
            if ax.get_xscale() == "linear" and x >= ax.get_xlim()[0]:
                assert (x, colour) in vertical_lines(ax)
    with pytest.raises(ValueError, match="threshold=1.5"):
        figures.break_even(real_sweep, threshold=1.5)


# -- hand-written runs: known answers ---------------------------------------------------------------------


def break_even_runs() -> list[Run]:
    runs = []
    for lr, acc in [(0.1, [0.3, 0.65, 0.8]), (0.5, [0.7, 0.8, 0.9])]:
        values = {mn.LAMBDA_H1: [1.0, 2.0, 3.0, 2.5], mn.LAMBDA_K1: [1, 2, 2, 2], mn.TRACE_K: [1, 1, 1, 1],
                  mn.COND_K: [0.1, 0.2, 0.2, 0.2], mn.TRACE_K_RATIO: [3, 4, 4, 4]}
        runs.append(hand_run(f"lr{lr}", epoch_rows(3, values, acc), lr=lr))
    return runs


def test_break_even_draws_the_five_metrics_the_threshold_and_two_over_lr():
    fig = figures.break_even(break_even_runs())  # default threshold 0.60
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    assert len(panels) == 6  # five metrics and the training accuracy
    assert "gradient covariance conditioning $\\lambda_K^*/\\lambda_K^1$" in panels
    assert "trace over top eigenvalue of K tr K$/\\lambda_K^1$" in panels
    # 60% first reached in epoch 1 (lr 0.1) and epoch 0 (lr 0.5): lines at 2 and 1 epochs completed
    lines = vertical_lines(panels["gradient covariance trace tr K"])
    assert sorted(x for x, _ in lines) == [1.0, 2.0]
    hessian = panels["top Hessian eigenvalue $\\lambda_H^1$"]
    levels = {round(float(line.get_ydata()[0]), 9): line.get_linestyle() for line in hessian.get_lines()
              if len(line.get_ydata()) == 2 and line.get_ydata()[0] == line.get_ydata()[1] and line.get_linestyle() == "--"}
    assert levels == {4.0: "--", 20.0: "--"}  # 2/lr
    assert hessian.get_ylim()[1] < 20.0  # 20 is more than 3x the data's top: left off the axis, and said so
    assert any("2/lr = 20 (learning rate 0.1), above the axis" == t for t in legend_labels(hessian))
    assert any(line.get_ydata()[0] == 60.0 for line in panels["training accuracy"].get_lines())
    assert_words_only(fig)
    assert_integer_epoch_ticks(fig)


def test_break_even_marks_each_curves_peak_and_cuts_the_axis_below_a_single_spike():
    steady = {mn.LAMBDA_H1: [1.0, 2.0, 3.0, 2.5, 2.4, 2.3], mn.TRACE_K: [1.0, 1.1, 1.2, 1.3, 1.2, 1.1]}
    spiky = {mn.LAMBDA_H1: [1.0, 2.5, 2.0, 2.2, 2.1, 2.0], mn.TRACE_K: [1.0, 1.2, 90.0, 1.3, 1.2, 1.1]}
    runs = [hand_run("a", epoch_rows(5, steady), lr=0.1), hand_run("b", epoch_rows(5, spiky), lr=0.5)]
    panels = {ax.get_title(): ax for ax in figures.break_even(runs).axes if ax.get_title()}
    hessian, trace = panels["top Hessian eigenvalue $\\lambda_H^1$"], panels["gradient covariance trace tr K"]
    peaks = sorted((float(l.get_xdata()[0]), float(l.get_ydata()[0])) for l in hessian.get_lines() if l.get_marker() == "v")
    assert peaks == [(1.0, 2.5), (2.0, 3.0)]  # one triangle per curve, at its maximum
    assert trace.get_ylim()[1] < 90.0 and any(t.get_text().startswith("axis cut: a spike reaches 90") for t in trace.texts)
    assert hessian.get_ylim()[1] >= 3.0 and not any(t.get_text().startswith("axis cut") for t in hessian.texts)


def test_seeds_crossing_the_threshold_in_the_same_epoch_are_not_called_never_reaching_it():
    values = {mn.LAMBDA_H1: [1.0, 2.0, 3.0, 2.5]}
    runs = [hand_run(f"s{seed}", epoch_rows(3, values, [0.3, 0.65, 0.8]), seed=seed) for seed in (0, 1)]
    runs.append(hand_run("slow", epoch_rows(3, values, [0.3, 0.4, 0.5]), lr=0.05))
    texts = [t.get_text() for ax in figures.break_even(runs).axes for t in ax.texts]
    assert [t for t in texts if t.startswith("never reach it")] == ["never reach it: learning rate 0.05"]


def test_fisher_trace_is_a_mean_over_seeds_with_the_deficit_window_shaded():
    runs = [hand_run(f"none{s}", epoch_rows(4, {mn.FISHER_TRACE: [1, 2 + s, 3, 4, 5]}), seed=s) for s in (0, 1)]
    runs += [hand_run(f"blur{s}", epoch_rows(4, {mn.FISHER_TRACE: [1, 4, 6 + 2 * s, 5, 4]}), seed=s, deficit="blur", onset=1, length=2)
             for s in (0, 1)]
    fig = figures.fisher_trace(runs)
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"no deficit (mean of 2 runs)", "blur in epochs 1-3 (mean of 2 runs)"}
    assert list(lines["blur in epochs 1-3 (mean of 2 runs)"].get_ydata()) == [1, 4, 7, 5, 4]
    band = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(band) == 2
    high = max(v[1] for path in band[1].get_paths() for v in path.vertices)
    assert high == 8  # min-max band: seed 1's 8 at epoch 2
    windows = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert [(w.get_x(), w.get_x() + w.get_width()) for w in windows] == [(1, 3)]
    assert "band: min-max over runs (seeds)" in texts(fig) and "deficit window (shaded)" in legend_labels(ax)
    assert fig.get_suptitle() == "Fisher information trace during training, by deficit"
    assert_words_only(fig)
    assert_integer_epoch_ticks(fig)


def test_fisher_share_is_the_mean_share_over_seeds_per_setting_without_deficit():
    def run(job, seed, lr, head):  # two layers; the head's trace is `head`, the body's 1 - head, total 1
        values = {mn.FISHER_TRACE: [1.0] * 3, mn.fisher_layer_trace("head"): head, mn.fisher_layer_trace("body"): [1 - h for h in head]}
        return hand_run(job, epoch_rows(2, values), seed=seed, lr=lr)

    runs = [run("a", 0, 0.1, [0.2, 0.4, 0.6]), run("b", 1, 0.1, [0.4, 0.6, 0.8]), run("c", 0, 0.5, [0.5, 0.5, 0.5]),
            hand_run("blur", epoch_rows(2, {mn.FISHER_TRACE: [1.0] * 3, mn.fisher_layer_trace("head"): [0.9] * 3}), deficit="blur", length=1)]
    fig = figures.fisher_share(runs)
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    assert set(panels) == {"no deficit, learning rate 0.1 (mean of 2 runs)", "no deficit, learning rate 0.5 (1 run)"}
    head = panels["no deficit, learning rate 0.1 (mean of 2 runs)"].collections[0]  # first stacked layer: the head
    assert max(v[1] for v in head.get_paths()[0].vertices) == pytest.approx(0.7)  # mean of 0.6 and 0.8 at epoch 2
    assert fig.get_suptitle() == "Per-layer share of the Fisher information trace (runs without deficit)"
    assert_words_only(fig)
    assert_integer_epoch_ticks(fig)


@pytest.mark.parametrize("kinds, paper", [(["blur"], "Fig. 1"), (["blur", "vertical_flip"], "Fig. 2")])
def test_error_vs_removal_names_the_paper_figure_and_the_kinds_in_words(kinds, paper):
    runs = [hand_run("none", [], deficit="none")]
    for kind in kinds:
        runs += [hand_run(f"{kind}{n}", [], deficit=kind, length=n) for n in (2, 4)]
    fig = figures.error_vs_removal(runs)
    assert fig.axes[0].get_title().endswith(f"(cf. Achille et al. 2019, {paper})")
    two_seeds = runs + [hand_run(f"{r.job}-1", [], seed=1, deficit=r.deficit, length=r.length) for r in runs]
    ax = figures.error_vs_removal(two_seeds).axes[0]
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) >= len(kinds)  # a band per deficit curve: every line is drawn above every band
    assert all(line.get_zorder() > band.get_zorder() for line in ax.get_lines() for band in bands)
    assert_words_only(fig)
    assert_integer_epoch_ticks(fig)  # removal epochs


@pytest.mark.parametrize("schedule, words", [
    ({"lr_schedule": "constant", "lr_restart": False}, "constant lr"),
    ({"lr_schedule": "exponential", "lr_gamma": 0.97, "lr_restart": True}, "lr x0.97 per epoch, restarted at removal"),
])
def test_the_achille_figures_name_the_lr_schedule_in_their_titles(schedule, words):
    runs = [hand_run("none", [], deficit="none")] + [hand_run(f"blur{n}", [], deficit="blur", length=n) for n in (2, 4)]
    for run in runs:
        run.config["schedule"] = schedule
    assert figures.error_vs_removal(runs).axes[0].get_title().endswith(f"Fig. 1)\n{words}")
    assert figures.sensitivity_vs_onset([hand_run(f"w{o}{k}", [], deficit=k, onset=o, length=2) for o in (0, 2)
                                          for k in ("blur", "none")]).axes[0].get_title().count("\n") == 0  # not said
    runs[1].config["schedule"] = {"lr_schedule": "step", "lr_gamma": 0.5, "lr_step_size": 30}
    assert labels.schedule_words(runs) == ""  # mixed schedules: the curves' labels say which
    assert labels.schedule_words(runs[1:2]) == "lr x0.5 every 30 epochs"


def test_error_vs_depth_draws_each_kind_against_hidden_layers_with_every_seed():
    runs = []
    for depth, harm in ((1, 0.05), (4, 0.12)):
        for kind, error in (("none", 0.3), ("blur", 0.3 + harm)):
            for seed in (0, 1):
                run = hand_run(f"{kind}{depth}-{seed}", [], seed=seed, deficit=kind, length=40)
                run.config["model"] = {"widths": [256] * depth}
                run.summary.final["final/test_error"] = error + 0.01 * seed
                runs.append(run)
    ax = figures.error_vs_depth(runs).axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"no deficit (mean of 2 runs)", "blur (mean of 2 runs)"}
    assert list(lines["blur (mean of 2 runs)"].get_xdata()) == [1, 4]
    assert list(lines["blur (mean of 2 runs)"].get_ydata()) == pytest.approx([35.5, 42.5])  # percent, seed mean
    assert sum(len(c.get_offsets()) for c in ax.collections if c.get_offsets().size) >= 8  # a dot per run
    assert "removed at epoch 40" in ax.get_title()
    with pytest.raises(figures.NoData, match="two or more depths"):
        figures.error_vs_depth([r for r in runs if len(r.config["model"]["widths"]) == 1])


def test_matched_no_deficit_runs_of_several_lengths_are_a_curve_not_a_pooled_line():
    runs = [hand_run(f"{kind}{n}-{seed}", [], seed=seed, deficit=kind, length=n)
            for kind in ("blur", "none") for n in (2, 4) for seed in (0, 1)]
    ax = figures.error_vs_removal(runs).axes[0]
    labels = {line.get_label(): line for line in ax.get_lines()}
    assert set(labels) == {"blur (mean of 2 runs)", "no deficit (mean of 2 runs)"}
    assert list(labels["no deficit (mean of 2 runs)"].get_xdata()) == [2, 4]  # a curve over the removal epochs
    assert ax.get_title().endswith("Fig. 1)")  # blur alone: the no-deficit curve is the control, not a kind


def test_fisher_trace_of_a_batch_study_is_not_called_a_critical_period():
    runs = [hand_run(f"b{b}", epoch_rows(2, {mn.FISHER_TRACE: [1, 2, 3]}), batch_size=b) for b in (32, 512)]
    fig = figures.fisher_trace(runs)
    assert fig.get_suptitle() == "Fisher information trace during training, by batch size"
    assert {line.get_label() for line in fig.axes[0].get_lines()} == {"batch size 32 (1 run)", "batch size 512 (1 run)"}


# -- the probe figures --------------------------------------------------------------------------------------


def stiffness_values(shift: float) -> dict[str, list[float]]:
    return {mn.STIFFNESS_COS_SAME: [0.1 + shift, 0.5, 0.6], mn.STIFFNESS_COS_DIFF: [0.1, 0.0, -0.1],
            mn.STIFFNESS_SIGN_SAME: [0.2, 0.7, 0.8], mn.STIFFNESS_SIGN_DIFF: [0.2, 0.1, 0.0]}


def test_stiffness_same_vs_different_class_mean_over_seeds():
    runs = [hand_run(f"s{s}", epoch_rows(2, stiffness_values(0.2 * s)), seed=s) for s in (0, 1)]
    fig = probe_figures.stiffness(runs)
    cos, sign = [ax for ax in fig.axes if ax.get_title()]
    lines = {line.get_label(): line for line in cos.get_lines()}
    assert set(lines) == {"same class (mean of 2 runs)", "different classes (mean of 2 runs)"}
    assert list(lines["same class (mean of 2 runs)"].get_ydata()) == pytest.approx([0.2, 0.5, 0.6])
    assert lines["same class (mean of 2 runs)"].get_linestyle() == "-"
    assert lines["different classes (mean of 2 runs)"].get_linestyle() == "--"
    assert "sign" in sign.get_title() and len(sign.get_lines()) == 2
    assert_words_only(fig)
    assert_integer_epoch_ticks(fig)


def test_frequency_low_and_high_error():
    runs = [hand_run("r", epoch_rows(3, {mn.FREQUENCY_ERROR_LOW: [1.0, 0.4, 0.2, 0.1], mn.FREQUENCY_ERROR_HIGH: [1.0, 0.9, 0.7, 0.5]}))]
    fig = probe_figures.frequency(runs)
    lines = {line.get_label().split(" (")[0]: list(line.get_ydata()) for line in fig.axes[0].get_lines()}
    assert lines == {"low frequencies $e_{low}$": [1.0, 0.4, 0.2, 0.1], "high frequencies $e_{high}$": [1.0, 0.9, 0.7, 0.5]}
    assert_words_only(fig)


def test_cka_heatmap_is_layer_by_epoch_mean_of_the_runs_without_deficit():
    layers = ("features.fc1", "head")

    def run(job, seed, values, **deficit):
        return hand_run(job, epoch_rows(2, {mn.cka_vs_init(l): v for l, v in zip(layers, values)}), seed=seed, **deficit)

    runs = [run("a", 0, [[1.0, 0.8, 0.6], [1.0, 0.5, 0.3]]), run("b", 1, [[1.0, 0.6, 0.4], [1.0, 0.3, 0.1]]),
            run("blur", 0, [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], deficit="blur", length=1)]
    fig = probe_figures.cka_heatmap(runs)
    (mesh,) = fig.findobj(QuadMesh)[:1]
    assert np.asarray(mesh.get_array()).reshape(2, 3) == pytest.approx(np.array([[1.0, 0.7, 0.5], [1.0, 0.4, 0.2]]))
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == list(layers)
    assert "no deficit, mean of 2 runs" in fig.get_suptitle()
    assert_integer_epoch_ticks(fig)


def test_probe_figures_say_what_is_missing():
    runs = [hand_run("r", epoch_rows(1, {mn.FISHER_TRACE: [1, 2]}))]
    for draw, missing in [(probe_figures.stiffness, "stiffness/"), (probe_figures.frequency, "frequency/"),
                          (probe_figures.cka_heatmap, "cka/<layer>/vs_init")]:
        with pytest.raises(NoData, match=re.escape(missing)):
            draw(runs)
    with pytest.raises(NoData):
        probe_figures.cka_deficit_vs_clean(runs)



def test_cka_deficit_vs_clean_from_saved_representations(tmp_path):
    from critical_periods.probes.cka import linear_cka
    from critical_periods.probes.representations import save_representations

    rng = np.random.default_rng(0)
    clean = {"features.fc1": rng.normal(size=(40, 6)), "head": rng.normal(size=(40, 3))}
    changed = {"features.fc1": clean["features.fc1"] @ rng.normal(size=(6, 6)), "head": rng.normal(size=(40, 3))}
    probe_inputs = torch.zeros(40, 5)  # the same probe set for both runs (its digest is checked)

    def saved(job, reps, epochs, **deficit):
        run = hand_run(job, [], **deficit)
        run.path = tmp_path / job
        for epoch in epochs:
            save_representations(run.path, epoch, {k: torch.from_numpy(v) for k, v in reps.items()}, probe_inputs)
        return run

    # the latest epoch both saved is 4: the deficit run's epoch 6 has no clean counterpart
    runs = [saved("clean", clean, [0, 4]), saved("blur", changed, [0, 4, 6], deficit="blur", length=2)]
    fig = probe_figures.cka_deficit_vs_clean(runs)
    (line,) = fig.axes[0].get_lines()[:1]
    as_saved = lambda a: torch.from_numpy(a.astype(np.float16).astype(np.float64))  # noqa: E731
    expected = [float(linear_cka(as_saved(changed[k]), as_saved(clean[k]), debiased=True)) for k in ("features.fc1", "head")]
    assert list(line.get_ydata()) == pytest.approx(expected)
    assert line.get_label() == "blur until epoch 2 (1 run)"
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["features.fc1", "head"]
    bottom, top = fig.axes[0].get_ylim()
    assert bottom <= 0.0 and top >= 1.0  # the CKA axis is never truncated to the data


# -- files: a vector file beside each PNG, a paper's resolution; the window's legend patch ---------------


def window_legend_colours(ax) -> list[tuple]:
    """The colours of the patches drawn in the legend's deficit-window entry (one per window colour)."""
    legend = ax.get_legend()
    (entry,) = [i for i, t in enumerate(legend.get_texts()) if t.get_text() == "deficit window (shaded)"]
    box = legend._legend_handle_box.get_children()[0].get_children()[entry]  # (handle area, text) of that entry
    return sorted(tuple(p.get_facecolor()) for p in box.get_children()[0].findobj(Rectangle)
                  if p.get_facecolor()[3] < 1)


def test_the_deficit_window_legend_patch_has_each_windows_colour():
    def blurred(job, onset):
        return hand_run(job, epoch_rows(6, {mn.FISHER_TRACE: [1, 2, 3, 4, 5, 6, 7]}), deficit="blur", onset=onset, length=2)

    runs = [hand_run("none", epoch_rows(6, {mn.FISHER_TRACE: [1, 2, 3, 3, 3, 3, 3]})), blurred("early", 0), blurred("late", 3)]
    ax = figures.fisher_trace(runs).axes[0]  # (beside it: the sensitivity panel)
    windows = sorted(tuple(p.get_facecolor()) for p in ax.patches if isinstance(p, Rectangle))
    assert len(set(windows)) == 2  # two windows, each in its setting's colour
    assert window_legend_colours(ax) == windows
    assert legend_labels(ax)[-1] == "deficit window (shaded)"  # one entry, after the lines

    (ax,) = figures.fisher_trace(runs[:2]).axes  # one window: one patch of its colour
    assert window_legend_colours(ax) == [tuple(p.get_facecolor()) for p in ax.patches if isinstance(p, Rectangle)]


def png_width(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[16:20], "big")  # the IHDR chunk's width


def test_each_figure_gets_a_vector_file_and_the_analysis_offers_a_papers_resolution(tmp_path, capsys):
    from critical_periods import analyze
    from test_analyze import write_summary

    sweep = tmp_path / "sweep"
    for seed in (0, 1):
        write_summary(sweep / f"none{seed}", "none", 0, 0, seed, 0.1)
        for length in (2, 8):
            write_summary(sweep / f"blur{length}_{seed}", "blur", 0, length, seed, 0.1 + length / 100)
    out = sweep / "analysis"
    assert analyze.main([str(sweep)]) == 0
    png = out / "error_vs_removal.png"
    assert png.exists() and (out / "error_vs_removal.pdf").read_bytes()[:5] == b"%PDF-"
    assert not (out / "error_vs_removal.svg").exists()
    width_120 = png_width(png)

    assert analyze.main([str(sweep), "--dpi", "300", "--vector", "svg"]) == 0
    assert png_width(png) == pytest.approx(width_120 * 300 / 120, rel=0.01)
    assert "<svg" in (out / "error_vs_removal.svg").read_text()[:500]
    assert not (out / "error_vs_removal.pdf").exists()  # no stale file of the other format

    assert analyze.main([str(sweep), "--vector", "none"]) == 0
    assert png.exists() and not list(out.glob("*.svg")) and not list(out.glob("*.pdf"))
    capsys.readouterr()
    with pytest.raises(SystemExit) as bad:
        analyze.main([str(sweep), "--dpi", "lots"])
    assert bad.value.code == 2 and "lots is not a resolution in dots per inch" in capsys.readouterr().err
