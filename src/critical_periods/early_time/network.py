"""The two-layer student of Hu et al. (2020) in the NTK parameterisation."""

from __future__ import annotations

import torch
from torch import nn

from critical_periods.config.validation import not_allowed


class TwoLayerErf(nn.Module):
    """f(x) = (1/sqrt(m)) sum_r v_r erf(w_r . x / sqrt(d)), W_ri ~ N(0, 1), v_r ~ N(0, 1), no biases.

    The scales 1/sqrt(d), 1/sqrt(m) sit in the forward pass (NTK parameterisation), so one learning
    rate serves both layers and the tangent kernel has an O(1) limit as m grows.

    Mirrored start: units come in pairs (w, v) and (w, -v), so f_0 = 0 (up to rounding), as the linear model
    that starts from zero does; otherwise the network's random O(1) output at step 0 would be a
    discrepancy no linear model trained from zero can match. The pairs separate once trained (their
    gradients differ in sign in the first layer).
    """

    def __init__(self, input_dim: int, width: int = 256, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if width < 2 or width % 2:
            raise not_allowed("width", width, "an even whole number >= 2 (units come in mirrored pairs)")
        half_w = torch.randn(width // 2, input_dim, generator=generator, dtype=torch.float64)
        half_v = torch.randn(width // 2, generator=generator, dtype=torch.float64)
        self.w = nn.Parameter(torch.cat([half_w, half_w]).to(dtype))
        self.v = nn.Parameter(torch.cat([half_v, -half_v]).to(dtype))
        self.input_dim, self.width = input_dim, width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.erf(x @ self.w.T / self.input_dim**0.5)  # (N, m)
        return hidden @ self.v / self.width**0.5  # (N,)
