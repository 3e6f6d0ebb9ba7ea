"""Change of the training loss between consecutive optimisation steps, summarised per epoch."""

from __future__ import annotations

import torch

from critical_periods.record import metric_names as names
from torch import Tensor


class DeltaLoss:
    """Running mean of ``Delta L_t = L_t - L_{t-1}`` and of ``|Delta L_t|`` over consecutive losses.

    ``update`` takes the next losses in order (a scalar or a 1-D tensor); differences are taken across
    update boundaries too, so chunked updates equal one update on the concatenated sequence. Sums stay
    tensors on the losses' device (no host sync per step) until ``compute``. ``reset`` clears the
    sums but keeps the last loss: the first step of a new epoch still differs from the previous step.

    >>> meter = DeltaLoss()
    >>> meter.update(torch.tensor([1.0, 0.5])); meter.update(torch.tensor(0.75))
    >>> meter.compute()
    {'break_even/delta_loss_abs': 0.375, 'break_even/delta_loss': -0.125}
    """

    def __init__(self) -> None:
        self.last: Tensor | None = None
        self.reset()

    def reset(self) -> None:
        self.sum = torch.zeros((), dtype=torch.float64)
        self.sum_abs = torch.zeros((), dtype=torch.float64)
        self.count = 0

    def update(self, losses: Tensor) -> None:
        losses = losses.detach().reshape(-1).double()
        if losses.numel() == 0:
            return
        sequence = losses if self.last is None else torch.cat([self.last.reshape(1), losses])
        differences = sequence.diff()
        self.sum = self.sum.to(losses.device) + differences.sum()
        self.sum_abs = self.sum_abs.to(losses.device) + differences.abs().sum()
        self.count += differences.numel()
        self.last = losses[-1]

    def compute(self) -> dict[str, float]:
        """Means over the differences seen since the last reset (NaN if there were none)."""
        if self.count == 0:
            return {names.DELTA_LOSS_ABS: float("nan"), names.DELTA_LOSS: float("nan")}
        return {
            names.DELTA_LOSS_ABS: float(self.sum_abs) / self.count,
            names.DELTA_LOSS: float(self.sum) / self.count,
        }
