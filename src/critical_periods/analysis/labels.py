"""Words for figures: config keys, deficit kinds and metric keys as a reader of the paper says them.

The one mapping from the project's keys to words. Labels are built from the runs' resolved configs
(what varies between them), never from Hydra override strings, so a legend reads "batch size 32",
not ``data.batch_size=32``. Keys without an entry fall back to their last part with spaces.

>>> setting_words("data.batch_size", 32)
'batch size 32'
>>> setting_words("optim.lr", 0.1)
'learning rate 0.1'
>>> setting_words("schedule.lr_gamma", 0.97)
'lr gamma 0.97'
>>> metric_label("curvature/lambda_h1")
'top Hessian eigenvalue $\\\\lambda_H^1$'
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from critical_periods.record import metric_names as mn
from critical_periods.analysis.runs import Run, flatten

# config key (dotted, as in the resolved config) -> words
SETTING_WORDS = {
    "data.batch_size": "batch size",
    "optim.lr": "learning rate",
    "optim.momentum": "momentum",
    "optim.weight_decay": "weight decay",
    "model.widths": "hidden widths",
    "model.depth": "depth",
    "model.width": "width",
    "model.channels": "channels",
    "model.batch_norm": "batch norm",
    "model.dropout": "dropout",
    "model.activation": "activation",
    "model._target_": "model",
    "data.source._target_": "data",
    "data.source.num_samples": "examples in the data set",
    "schedule.epochs": "epochs",
    "schedule.epochs_after_deficit": "clean epochs after the deficit",
    "schedule.lr_schedule": "lr schedule",
    "schedule.lr_restart": "lr restart at removal",
    "deficit.onset": "deficit onset",
    "deficit.length": "deficit length",
    "seed": "seed",
}

DEFICIT_WORDS = {
    "none": "no deficit",
    "blur": "blur",
    "vertical_flip": "vertical flip",
    "label_permutation": "label permutation",
    "random_labels": "random labels",
    "shuffled_pixels": "shuffled pixels",
    "noise": "noise",
}


@dataclass(frozen=True)
class Metric:
    """How a metric is named on a figure: ``words`` then ``symbol`` (matplotlib mathtext), and the unit."""

    words: str
    symbol: str = ""
    unit: str = ""


METRICS = {
    mn.FISHER_TRACE: Metric("Fisher information trace", "tr F", "nat$^2$"),
    mn.LAMBDA_H1: Metric("top Hessian eigenvalue", r"$\lambda_H^1$", "nat"),
    mn.TRACE_H: Metric("Hessian trace", "tr H", "nat"),
    mn.LAMBDA_K1: Metric("top eigenvalue of the gradient covariance", r"$\lambda_K^1$", "nat$^2$"),
    mn.TRACE_K: Metric("gradient covariance trace", "tr K", "nat$^2$"),
    mn.COND_K: Metric("gradient covariance conditioning", r"$\lambda_K^*/\lambda_K^1$", "ratio"),
    mn.TRACE_K_RATIO: Metric("trace over top eigenvalue of K", r"tr K$/\lambda_K^1$", "ratio"),
    mn.TRAIN_ACC: Metric("training accuracy", "", "%"),
    mn.STIFFNESS_COS_SAME: Metric("cosine stiffness, same class"),
    mn.STIFFNESS_COS_DIFF: Metric("cosine stiffness, different classes"),
    mn.STIFFNESS_SIGN_SAME: Metric("sign stiffness, same class"),
    mn.STIFFNESS_SIGN_DIFF: Metric("sign stiffness, different classes"),
    mn.FREQUENCY_ERROR_LOW: Metric("relative error, low frequencies", r"$e_{low}$"),
    mn.FREQUENCY_ERROR_HIGH: Metric("relative error, high frequencies", r"$e_{high}$"),
}

EPOCHS_AXIS = "epochs completed (0 = initial weights)"
SEED_BAND = "band: min-max over runs (seeds)"


def metric_label(key: str) -> str:
    """``words symbol`` of a metric key (the key itself if it has no entry)."""
    metric = METRICS.get(key)
    if metric is None:
        return key
    return f"{metric.words} {metric.symbol}".strip()


def axis_label(key: str) -> str:
    """The metric's label with its unit in brackets, for a y axis."""
    metric = METRICS.get(key)
    return f"{metric_label(key)} ({metric.unit})" if metric is not None and metric.unit else metric_label(key)


def key_words(key: str) -> str:
    """A config key in words: ``SETTING_WORDS``, else its last part with spaces for underscores."""
    return SETTING_WORDS.get(key, key.rsplit(".", 1)[-1].replace("_", " "))


def value_words(value: Any) -> str:
    """A config value as printed in a label: ``0.0005`` not ``5e-04``, lists as ``[512, 512]``.

    >>> value_words(5e-4), value_words([512, 512]), value_words(True), value_words(None)
    ('0.0005', '[512, 512]', 'yes', 'none')
    """
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.10f}".rstrip("0").rstrip(".") if abs(value) >= 1e-6 or value == 0 else f"{value:g}"
    if isinstance(value, list):
        return "[" + ", ".join(value_words(v) for v in value) + "]"
    if value is None:
        return "none"
    return str(value)


def setting_words(key: str, value: Any) -> str:
    """``key value`` in words; a class or function path (``_target_``) by its last part.

    >>> setting_words("model._target_", "critical_periods.models.mlp.MLP")
    'model MLP'
    """
    if key.endswith("_target_") and isinstance(value, str):
        value = value.rsplit(".", 1)[-1].removeprefix("load_")
    return f"{key_words(key)} {value_words(value)}"


def kind_words(kind: str | None) -> str:
    return DEFICIT_WORDS.get(kind or "none", (kind or "none").replace("_", " "))


def has_deficit(run: Run) -> bool:
    """A deficit of length > 0 (a record that names no deficit kind counts as none)."""
    return not run.is_baseline and run.deficit is not None


def deficit_words(run: Run) -> str:
    """``no deficit``; ``blur until epoch 10`` (onset 0); ``blur in epochs 20-30``: the window
    [onset, onset + length) in epochs.

    >>> from pathlib import Path
    >>> from critical_periods.record.summary import Summary
    >>> run = Run("j", Path("j"), (), "completed", Summary(deficit="vertical_flip", onset=4, length=2), {})
    >>> deficit_words(run)
    'vertical flip in epochs 4-6'
    """
    if not has_deficit(run):
        return kind_words("none")
    if run.onset in (0, None):
        return f"{kind_words(run.deficit)} until epoch {run.length}"
    return f"{kind_words(run.deficit)} in epochs {run.onset}-{run.removal_epoch}"


def settings_words(run: Run, keys: Sequence[str]) -> str:
    """The run's values of the config ``keys``, in words, comma-joined (``""`` for no keys)."""
    flat = flatten(run.config)
    return ", ".join(setting_words(k, json.loads(flat[k]) if k in flat else None) for k in keys)


def run_words(run: Run, keys: Sequence[str], with_deficit: bool) -> str:
    """A setting's label: the deficit (when ``with_deficit``) and the varying config ``keys``."""
    parts = [deficit_words(run)] if with_deficit else []
    if keys:
        parts.append(settings_words(run, keys))
    return ", ".join(parts) or "all runs"


def runs_count(n: Sequence[int] | int) -> str:
    """``"mean of 2 runs"``; ``"1 run"``; ``"mean of 1-3 runs"`` when points average different numbers.

    >>> runs_count([2, 2]), runs_count(1), runs_count([1, 3])
    ('mean of 2 runs', '1 run', 'mean of 1-3 runs')
    """
    n = [n] if isinstance(n, int) else list(n)
    low, high = min(n), max(n)
    if high == 1:
        return "1 run"
    return f"mean of {low} runs" if low == high else f"mean of {low}-{high} runs"


def schedule_words(runs: Sequence[Run]) -> str:
    """The learning-rate schedule the runs share, in words ("lr x0.97 per epoch, restarted at removal",
    "constant lr"), for a figure's title; "" when the runs do not say or do not share one (their
    labels then name it).

    >>> from pathlib import Path
    >>> config = {"schedule": {"lr_schedule": "exponential", "lr_gamma": 0.97, "lr_restart": True}}
    >>> schedule_words([Run("a", Path("a"), (), "completed", None, config, [])])
    'lr x0.97 per epoch, restarted at removal'
    """
    described = set()
    for run in runs:
        schedule = run.config.get("schedule")
        if not isinstance(schedule, dict) or "lr_schedule" not in schedule:
            return ""
        kind = schedule["lr_schedule"]
        words = {"constant": "constant lr",
                 "exponential": f"lr x{value_words(schedule.get('lr_gamma'))} per epoch",
                 "step": f"lr x{value_words(schedule.get('lr_gamma'))} every {schedule.get('lr_step_size')} epochs"}.get(kind, f"lr {kind}")
        described.add(words + (", restarted at removal" if schedule.get("lr_restart") else ""))
    return described.pop() if len(described) == 1 else ""

