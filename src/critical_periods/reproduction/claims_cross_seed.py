"""Claims on networks that differ only in their seed (docs/rules.yaml, Kornblith et al. 2019 and the
depth trend of cross-instance similarity), judged from the ``cross_seed`` study.

Every completed run's final network is reloaded and its layers' outputs taken on the same test
examples (:mod:`critical_periods.analysis.cross_seed`); the logits layer is left out, as in the
paper. Per seed, each statistic is averaged over the other seeds, so the seeds are the units the
bootstrap resamples.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from torch import Tensor

from critical_periods.analysis.cross_seed import (
    CrossSeed,
    cross_seed,
    final_representations,
    hidden_layers,
    least_squares_slope,
)
from critical_periods.analysis.runs import Run
from critical_periods.analysis.tables import plotted_runs
from critical_periods.reproduction.claims import Claim, Judge, fmt, model_of
from critical_periods.reproduction.statistics import paired_effects, per_seed

STUDY = "cross_seed"
MATCHING_WIDTH = 128     # the deep MLP of the matching and depth claims (6 hidden layers)
COMMON_EXAMPLES = 1000   # the MNIST-1D test set: more examples than any compared layer has features
MATCHING, WIDTH, DEPTH = "kornblith-layer-matching", "kornblith-width", "instance-similarity-depth"
INDEX_WORDS = {"linear_cka": "linear CKA", "debiased_cka": "debiased CKA", "mean_cca": "mean CCA (R2_CCA)"}

Loader = Callable[[Path], Mapping[str, Tensor]]
Measured = dict[str, dict[str, CrossSeed]]  # {architecture: {similarity index: CrossSeed}}


def mlp_width(run: Run) -> int | None:
    """The hidden width of an MLP whose hidden layers all have one width (else ``None``)."""
    widths = (run.config.get("model") or {}).get("widths")
    return int(widths[0]) if isinstance(widths, (list, tuple)) and widths and len(set(widths)) == 1 else None


def architecture(run: Run) -> str:
    """``mlp-<width>`` or the model's name: the runs compared with each other."""
    model = model_of(run)
    return f"mlp-{mlp_width(run)}" if model == "mlp" and mlp_width(run) else model


def measure(runs: Sequence[Run], load: Loader | None = None) -> Measured:
    """Every architecture's cross-seed similarity matrices at the final epoch (>= 2 seeds)."""
    load = load or (lambda path: final_representations(path, COMMON_EXAMPLES))
    groups: dict[str, dict[int, Run]] = defaultdict(dict)
    for run in plotted_runs(runs):
        groups[architecture(run)][run.seed] = run
    measured: Measured = {}
    for key, by_seed in sorted(groups.items()):
        if len(by_seed) < 2:
            continue
        representations = {seed: load(run.path) for seed, run in by_seed.items()}
        measured[key] = cross_seed(representations, hidden_layers(representations[min(representations)]))
    return measured


def _empty(judge_: Judge, rule_id: str, model: str, why: str) -> Claim:
    parts = {p.name: per_seed({}) for p in judge_.rules[rule_id].parts}
    return judge_.claim(rule_id, model, "decaying", parts, None, why)


def matching_parts(indices: Mapping[str, CrossSeed]) -> dict:
    cka, cca = indices["linear_cka"].matching(), indices["mean_cca"].matching()
    return {"linear CKA identifies the layer": per_seed(cka), "linear CKA above mean CCA": paired_effects(cka, cca)}


def matching_claim(judge_: Judge, measured: Measured, key: str, model: str, figure: str | None) -> Claim:
    indices = measured.get(key)
    if indices is None:
        return _empty(judge_, MATCHING, model, f"Fewer than two seeds of {key} in this study.")
    state = judge_.rules.random_state
    control = matching_parts({name: cs.deranged(state) for name, cs in indices.items()})
    layers, seeds = indices["linear_cka"].layers, indices["linear_cka"].seeds
    table = []
    for name, cs in indices.items():
        values = list(cs.matching().values())
        table.append([INDEX_WORDS[name], f"{np.mean(values):.3f}", f"{min(values):.3f}", f"{max(values):.3f}"])
    return judge_.claim(
        MATCHING, model, "decaying", matching_parts(indices), control,
        f"{key}: {len(layers)} hidden layers ({', '.join(layers)}), {len(seeds)} seeds, {len(seeds) * (len(seeds) - 1)} "
        f"ordered seed pairs, {COMMON_EXAMPLES} common test examples; chance {1 / len(layers):.2f}.",
        figure=figure, table=table, headers=["index", "matching accuracy (mean over seeds)", "min", "max"],
        numbers={name: cs.matching() for name, cs in indices.items()})


def layer_mean(diagonal: Mapping[int, np.ndarray]) -> dict[int, float]:
    return {seed: float(np.mean(values)) for seed, values in diagonal.items()}


def shuffled_widths(by_width: Mapping[int, Mapping[int, float]], random_state: int) -> dict[int, dict[int, float]]:
    """The control: per seed, the values of the widths in a fixed random permutation of the widths."""
    widths = sorted(by_width)
    seeds = set.intersection(*(set(v) for v in by_width.values()))
    out: dict[int, dict[int, float]] = {w: {} for w in widths}
    for seed in sorted(seeds):
        order = np.random.default_rng([random_state, seed]).permutation(len(widths))
        for w, i in zip(widths, order):
            out[w][seed] = by_width[widths[i]][seed]
    return out


def width_claim(judge_: Judge, measured: Measured, figure: str | None) -> Claim:
    widths = sorted(int(k.split("-")[1]) for k in measured if k.startswith("mlp-"))
    if len(widths) < 2:
        return _empty(judge_, WIDTH, "mlp", "Fewer than two MLP widths in this study.")
    similarity = {w: layer_mean(measured[f"mlp-{w}"]["debiased_cka"].diagonal()) for w in widths}
    shuffled = shuffled_widths(similarity, judge_.rules.random_state)
    narrow, wide = widths[0], widths[-1]
    table = [[str(w), f"{np.mean(list(similarity[w].values())):.3f}",
              f"{np.mean(list(layer_mean(measured[f'mlp-{w}']['linear_cka'].diagonal()).values())):.3f}",
              f"{np.mean(list(measured[f'mlp-{w}']['linear_cka'].matching().values())):.3f}", str(len(similarity[w]))]
             for w in widths]
    return judge_.claim(
        WIDTH, "mlp", "decaying", paired_effects(similarity[wide], similarity[narrow]),
        paired_effects(shuffled[wide], shuffled[narrow]),
        f"MLPs of 6 hidden layers of width {', '.join(map(str, widths))}; per seed, the debiased CKA of each hidden "
        f"layer with the same layer of every other seed, averaged over layers and seeds; width {wide} minus {narrow}.",
        figure=figure, table=table,
        headers=["width", "cross-seed debiased CKA", "cross-seed linear CKA", "matching accuracy (linear CKA)", "seeds"],
        numbers={"widths": widths, "debiased_cka": similarity})


def depth_claim(judge_: Judge, measured: Measured, figure: str | None) -> Claim:
    key = f"mlp-{MATCHING_WIDTH}"
    if key not in measured:
        return _empty(judge_, DEPTH, "mlp", f"Fewer than two seeds of {key} in this study.")
    profiles = measured[key]["debiased_cka"].diagonal()
    state = judge_.rules.random_state
    slopes = {s: least_squares_slope(p) for s, p in profiles.items()}
    control = {s: least_squares_slope(np.random.default_rng([state, s]).permutation(p)) for s, p in profiles.items()}
    mean_profile = np.mean(list(profiles.values()), axis=0)
    return judge_.claim(
        DEPTH, "mlp", "decaying", per_seed(slopes), per_seed(control),
        f"{key}, {len(profiles)} instances: mean cross-instance debiased CKA per hidden layer "
        + ", ".join(fmt(v) for v in mean_profile) + f"; slope of that mean {fmt(least_squares_slope(mean_profile))} per layer.",
        figure=figure, table=[[str(i + 1), f"{v:.3f}"] for i, v in enumerate(mean_profile)],
        headers=["hidden layer", "mean cross-instance debiased CKA"],
        numbers={"slopes": slopes, "mean_profile": mean_profile.tolist()})


def sweep_dir_of(runs: Sequence[Run]) -> Path | None:
    """The study's folder: the runs' paths without their job part."""
    for run in runs:
        return run.path.parents[len(Path(run.job).parts) - 1]
    return None


def cross_seed_claims(judge_: Judge, runs: Sequence[Run], figure: Callable[[str, str], str],
                      load: Loader | None = None) -> list[Claim]:
    """The matching claim for the deep MLP and conv1d, the width claim and the depth claim; draws
    the study's figures into its ``analysis/`` folder."""
    measured = measure(runs, load)
    sweep_dir = sweep_dir_of(runs)
    if sweep_dir is not None and measured:
        from critical_periods.analysis.cross_seed_figures import draw_all

        draw_all(measured, sweep_dir / "analysis", MATCHING_WIDTH)
    name = lambda stem: figure(STUDY, f"{stem}.png")
    return [matching_claim(judge_, measured, f"mlp-{MATCHING_WIDTH}", "mlp", name("layer_cka")),
            matching_claim(judge_, measured, "conv1d", "conv1d", name("layer_cka")),
            width_claim(judge_, measured, name("width")),
            depth_claim(judge_, measured, name("depth"))]
