"""One run: the two-layer erf network and its linear model, trained side by side by full-batch GD."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from critical_periods.config.validation import not_allowed
from critical_periods.data.teacher import teacher_tensors
from critical_periods.early_time.linear_model import EarlyLinearModel
from critical_periods.early_time.network import TwoLayerErf


@dataclass(frozen=True)
class EarlyRunConfig:
    input_dim: int = 50
    width: int = 256
    num_samples: int = 20000
    test_samples: int = 2000
    teacher_width: int = 5
    data_seed: int | None = None  # the task's seed; None: the run seed (each seed a fresh task and student)
    seed: int = 0
    lr_per_dim: float = 0.5  # lr = lr_per_dim * d: the linear phase then takes the same steps for every d
    steps: int = 200
    log_points: int = 30     # log-spaced steps (plus step 0) at which the test outputs are compared
    also_log: tuple[int, ...] = (10,)  # steps the rules read (docs/rules.yaml hu-early-linear-*), always logged

    def check(self) -> None:
        for key in ("input_dim", "width", "num_samples", "steps", "log_points"):
            if getattr(self, key) < 1:
                raise not_allowed(key, getattr(self, key), "a whole number >= 1")
        if self.width % 2:
            raise not_allowed("width", self.width, "an even whole number (units come in mirrored pairs)")
        if not self.lr_per_dim > 0:
            raise not_allowed("lr_per_dim", self.lr_per_dim, "a number > 0")

    @property
    def lr(self) -> float:
        return self.lr_per_dim * self.input_dim


def log_steps(steps: int, points: int, also: tuple[int, ...] = ()) -> list[int]:
    """0 and ~`points` log-spaced steps in [1, steps], dense early, always including `steps` and
    the steps in `also` that are <= `steps`."""
    grid = np.round(np.logspace(0, math.log10(steps), points)).astype(int).tolist()
    return [0, *sorted(set(grid) | {s for s in also if 0 < s <= steps})]


def run_early(config: EarlyRunConfig) -> dict:
    """Trains both models for config.steps full-batch GD steps on (1/2n) sum (f - y)^2.

    Returns the config, the logged steps and, at each: ``mse`` = mean over the test set of
    (f_t(x) - f_lin_t(x))^2, ``mse_control`` the same against the linear model with shuffled input
    coefficients (the control),
    ``net_sq``/``lin_sq`` the mean squared test outputs, the train loss and test accuracy of each.
    The network runs in float32, the linear models in float64.
    """
    config.check()
    x, y, x_test, y_test = teacher_tensors(config.num_samples, config.test_samples, config.input_dim,
                                           config.teacher_width,
                                           config.seed if config.data_seed is None else config.data_seed)
    g = torch.Generator().manual_seed(config.seed)
    net = TwoLayerErf(config.input_dim, config.width, generator=g)
    permutation = torch.randperm(config.input_dim, generator=g)
    linear = EarlyLinearModel(x, y, config.lr)
    optimizer = torch.optim.SGD(net.parameters(), lr=config.lr)
    x32, y32, x_test32 = x.float(), y.float(), x_test.float()
    wanted = set(log_steps(config.steps, config.log_points, config.also_log))
    rows: dict[str, list[float]] = {k: [] for k in ("step", "mse", "mse_control", "net_sq", "lin_sq", "net_train_loss",
                                                    "lin_train_loss", "net_test_acc", "lin_test_acc")}
    for step in range(config.steps + 1):
        if step in wanted:
            with torch.no_grad():
                out = net(x_test32).double()
                train_out = net(x32).double()
            lin_out, control_out = linear(x_test), linear(x_test, shuffle=permutation)
            rows["step"].append(step)
            rows["mse"].append(float(((out - lin_out) ** 2).mean()))
            rows["mse_control"].append(float(((out - control_out) ** 2).mean()))
            rows["net_sq"].append(float((out**2).mean()))
            rows["lin_sq"].append(float((lin_out**2).mean()))
            rows["net_train_loss"].append(float(((train_out - y) ** 2).mean() / 2))
            rows["lin_train_loss"].append(float(((linear(x) - y) ** 2).mean() / 2))
            rows["net_test_acc"].append(float((torch.sign(out) == y_test).double().mean()))
            rows["lin_test_acc"].append(float((torch.sign(lin_out) == y_test).double().mean()))
        if step == config.steps:
            break
        optimizer.zero_grad(set_to_none=True)
        loss = ((net(x32) - y32) ** 2).mean() / 2
        loss.backward()
        optimizer.step()
        linear.step()
    return {"config": asdict(config), "lr": config.lr, **rows}
