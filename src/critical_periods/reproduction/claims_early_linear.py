"""Hu et al. (2020): the early-time linear claims, judged from the runs of ``early_time.run``
(one JSON per run: the logged steps and, at each, the network-vs-linear-model test MSE)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from critical_periods.reproduction.claims import CONTROL_SEED_OFFSET, Claim, Judge, judged_seeds, shifted
from critical_periods.reproduction.statistics import per_seed

EARLY_STEP = 10        # docs/rules.yaml hu-early-linear-*: the linear model's fit is complete here
LATE_STEP = 200
INDISTINGUISHABLE = 0.05  # relative MSE below which the two count as indistinguishable
SMALL_DIM, LARGE_DIM, CONTROL_DIM = 20, 100, 50
MODEL, SCHEDULE = "mlp", "constant"
FIGURE = "early_linear.png"


def load_runs(folder: Path) -> list[dict]:
    """The runs in ``folder`` (``d<d>_seed<s>.json``), none if the study never ran."""
    return [json.loads(p.read_text()) for p in sorted(Path(folder).glob("d*_seed*.json"))]


def relative_mse(run: Mapping, step: int, control: bool = False) -> float | None:
    """mean (f - f_lin)^2 / mean f_lin^2 on the test set at ``step`` (None if not logged);
    ``control``: against the shuffled-coefficient linear model."""
    if step not in run["step"]:
        return None
    i = run["step"].index(step)
    power = run["lin_sq"][i]
    return (run["mse_control" if control else "mse"][i] / power) if power > 0 else None


def by_seed(runs: Sequence[Mapping], dim: int, step: int, control: bool = False) -> dict[int, float]:
    out = {}
    for run in runs:
        if run["config"]["input_dim"] == dim:
            value = relative_mse(run, step, control)
            if value is not None:
                out[int(run["config"]["seed"])] = value
    return out


def window_parts(runs: Sequence[Mapping], control: bool) -> dict:
    early = judged_seeds(by_seed(runs, CONTROL_DIM, EARLY_STEP, control))
    late = judged_seeds(by_seed(runs, CONTROL_DIM, LATE_STEP, control))
    parting = {s: float(np.log10(late[s] / early[s])) for s in early if s in late and early[s] > 0 and late[s] > 0}
    return {"indistinguishable early": per_seed({s: v - INDISTINGUISHABLE for s, v in early.items()}),
            "then part": per_seed(parting)}


def log_drop(small: Mapping[int, float], large: Mapping[int, float]) -> dict[int, float]:
    return {s: float(np.log10(small[s]) - np.log10(large[s])) for s in small if s in large and small[s] > 0 and large[s] > 0}


def early_linear_claims(judge_: Judge, runs: Sequence[Mapping], figure: str | None = FIGURE) -> list[Claim]:
    """hu-early-linear-window (with the shuffled-coefficient control) and hu-early-linear-dimension
    (with the same-d fresh-seed control)."""
    early = {d: by_seed(runs, d, EARLY_STEP) for d in (SMALL_DIM, CONTROL_DIM, LARGE_DIM)}
    late = by_seed(runs, CONTROL_DIM, LATE_STEP)
    mean = lambda values: float(np.mean(list(values.values()))) if values else float("nan")  # noqa: E731
    table = [[str(d), f"{mean(judged_seeds(early[d])):.4f}", str(len(judged_seeds(early[d])))] for d in early]
    measured = (f"Full-batch GD, lr 0.5 d, width 256; relative test MSE network vs linear model at step {EARLY_STEP}: "
                + ", ".join(f"d={d}: {mean(judged_seeds(v)):.4f}" for d, v in early.items())
                + f"; at step {LATE_STEP} (d={CONTROL_DIM}): {mean(judged_seeds(late)):.4f}.")
    window = judge_.claim("hu-early-linear-window", MODEL, SCHEDULE, window_parts(runs, False), window_parts(runs, True),
                          measured, figure=figure, table=table, headers=["d", f"relative MSE at step {EARLY_STEP}", "seeds"],
                          numbers={"relative_mse_early": {d: mean(judged_seeds(v)) for d, v in early.items()},
                                   "relative_mse_late": mean(judged_seeds(late))})
    fifty = early[CONTROL_DIM]
    dimension = judge_.claim(
        "hu-early-linear-dimension", MODEL, SCHEDULE,
        per_seed(log_drop(judged_seeds(early[SMALL_DIM]), judged_seeds(early[LARGE_DIM]))),
        per_seed(log_drop(judged_seeds(fifty), shifted(fifty))),
        measured, figure=figure)
    return [window, dimension]


def draw_figure(runs: Sequence[Mapping], out_dir: Path) -> list[Path]:
    """Relative MSE against step (log-log), per d: mean over the judged seeds with their min-max band,
    and the shuffled-coefficient control at d = 50 (dashed). A .png and a .pdf in ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    dims = sorted({r["config"]["input_dim"] for r in runs})
    for dim in dims:
        for control in (False, True):
            if control and dim != CONTROL_DIM:
                continue
            chosen = [r for r in runs if r["config"]["input_dim"] == dim and r["config"]["seed"] < CONTROL_SEED_OFFSET]
            if not chosen:
                continue
            steps = [s for s in chosen[0]["step"] if s > 0]
            curves = np.array([[relative_mse(r, s, control) or np.nan for s in steps] for r in chosen])
            label = f"d = {dim}" + (", shuffled coefficients (control)" if control else "")
            line, = ax.plot(steps, np.nanmean(curves, 0), ls="--" if control else "-", label=label)
            ax.fill_between(steps, np.nanmin(curves, 0), np.nanmax(curves, 0), color=line.get_color(), alpha=0.2)
    ax.axvline(EARLY_STEP, color="grey", lw=0.8, ls=":")
    ax.set(xscale="log", yscale="log", xlabel="GD step", ylabel="test MSE(network, linear model) / mean f_lin^2",
           title="Hu et al. 2020: network vs its linear model")
    ax.legend(fontsize=7)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / FIGURE, out_dir / FIGURE.replace(".png", ".pdf")]
    for path in paths:
        fig.savefig(path)
    plt.close(fig)
    return paths
