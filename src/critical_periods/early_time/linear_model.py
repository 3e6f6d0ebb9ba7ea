"""The linear model that a two-layer network's early GD dynamics follow (Hu et al. 2020, Sec. 3).

Derivation (we could not read the paper's eq. (11) itself, so this is our own; docs/metrics.md):
for f(x) = (1/sqrt(m)) sum_r v_r phi(w_r . x / sqrt(d)) with both layers trained at one rate, the
tangent kernel at initialisation is

    Theta(x, x') = (x.x'/d) (1/m) sum_r v_r^2 phi'(u_r) phi'(u'_r) + (1/m) sum_r phi(u_r) phi(u'_r),

u_r = w_r . x / sqrt(d). For large m, d and ||x||^2 ~ d, expand in rho = x.x'/d (Hermite series of the
activation under g ~ N(0, 1)): E[phi'(u) phi'(u')] = zeta^2 + E[phi'']^2 rho + ..., E[phi(u) phi(u')] =
E[phi]^2 + zeta^2 rho + (E[phi'']^2 / 2) rho^2 + ..., with zeta = E[phi'(g)]. Off the diagonal rho is
O(1/sqrt(d)) and rho^2 ~ 1/d on average, so to the order the paper keeps

    Theta_lin(x, x') = 2 zeta^2 x.x'/d + nu^2,   nu^2 = E[phi(g)]^2 + (3/2) E[phi''(g)]^2 / d,

the kernel of the features psi(x) = (sqrt(2) zeta x / sqrt(d), nu). The linear model is
f_lin(x) = beta . psi(x), beta_0 = 0, trained by the same GD on the same loss. For erf,
phi' = (2/sqrt(pi)) exp(-z^2), so zeta = 2/sqrt(3 pi) and E[phi] = E[phi''] = 0 (odd): nu = 0.
"""

from __future__ import annotations

import math

import torch

from critical_periods.config.validation import not_allowed

ERF_ZETA = 2.0 / math.sqrt(3.0 * math.pi)  # E[erf'(g)], g ~ N(0, 1)


def erf_moments(input_dim: int) -> tuple[float, float]:
    """(zeta, nu) for erf: E[erf'(g)] = 2/sqrt(3 pi); nu = 0 since erf and erf'' are odd."""
    return ERF_ZETA, 0.0


def features(x: torch.Tensor, zeta: float, nu: float) -> torch.Tensor:
    """psi(x) = (sqrt(2) zeta x / sqrt(d), nu): (N, d) -> (N, d + 1)."""
    d = x.shape[1]
    scaled = math.sqrt(2.0) * zeta * x / math.sqrt(d)
    return torch.cat([scaled, torch.full((len(x), 1), nu, dtype=x.dtype)], dim=1)


class EarlyLinearModel:
    """f_lin(x) = beta . psi(x) trained from beta = 0 by full-batch GD on (1/2n) sum (f_lin - y)^2.

    One step costs two (n, d+1) products: O(n d) time, O(n d) memory for the cached features.
    """

    def __init__(self, x_train: torch.Tensor, y_train: torch.Tensor, lr: float, activation: str = "erf") -> None:
        if activation != "erf":
            raise not_allowed("activation", activation, "erf (the only activation whose moments are coded)")
        self.zeta, self.nu = erf_moments(x_train.shape[1])
        self.psi = features(x_train.double(), self.zeta, self.nu)  # (n, d+1)
        self.y = y_train.double()
        self.lr = float(lr)
        self.beta = torch.zeros(self.psi.shape[1], dtype=torch.float64)

    def step(self) -> None:
        residual = self.psi @ self.beta - self.y  # (n,)
        self.beta = self.beta - self.lr * (self.psi.T @ residual) / len(self.y)

    def __call__(self, x: torch.Tensor, shuffle: torch.Tensor | None = None) -> torch.Tensor:
        """f_lin(x); with ``shuffle`` (a permutation of the d input coefficients), the control model
        beta_shuffle(i) . psi(x): the same coefficients on the wrong inputs. (Permuting the inputs
        instead would be no control: GD on iid coordinates is permutation-equivariant.)"""
        beta = self.beta
        if shuffle is not None:
            beta = torch.cat([beta[:-1][shuffle], beta[-1:]])
        return features(x.double(), self.zeta, self.nu) @ beta
