"""Curvature of the training loss: top Hessian eigenvalues (Lanczos) and the Hessian trace (Hutchinson).

As in curvlinops: the Hessian is a small operator object supporting ``H @ v``; the estimators are plain
functions of anything with ``@``, ``shape`` (and optionally ``dtype``/``device``), a torch tensor
included, so they can be checked on a small dense matrix before they meet a network.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, LinearOperator, eigsh
from torch import Tensor, nn

from critical_periods.probes.context import probe_mode


@dataclass
class HessianOptions:
    """top_k: eigenvalues lambda_H^1..k (0: none); tolerance: ARPACK's relative accuracy of the Ritz
    values; max_iterations: ARPACK restarts (each up to ~20 Hessian-vector products); trace_samples:
    Rademacher vectors for Hutchinson's tr H (0: skip)."""

    top_k: int = 1
    tolerance: float = 1e-3
    max_iterations: int = 100
    trace_samples: int = 10


class HessianOperator:
    """``v -> H v`` with ``H`` the Hessian of ``L(w) = (1/N) sum_i CE(f_w(x_i), y_i)`` (mean reduction).

    ``w`` is the trainable parameters flattened in ``model.parameters()`` order. Each product is a
    double backward pass per chunk of ``chunk_size`` examples, in eval mode (see ``probe_mode``),
    leaving ``.grad`` alone. ``v`` may be (P,) or (P, k).

    >>> net = nn.Linear(3, 2)
    >>> H = HessianOperator(net, torch.randn(5, 3), torch.tensor([0, 1, 1, 0, 1]))
    >>> H.shape, (H @ torch.zeros(8)).abs().max().item()
    ((8, 8), 0.0)
    """

    def __init__(
        self, model: nn.Module, inputs: Tensor, labels: Tensor, chunk_size: int | None = None
    ) -> None:
        self.model = model
        self.inputs = inputs
        self.labels = labels
        self.chunk_size = chunk_size or inputs.shape[0]
        self.params = [p for p in model.parameters() if p.requires_grad]
        size = sum(p.numel() for p in self.params)
        self.shape = (size, size)
        self.dtype = self.params[0].dtype
        self.device = self.params[0].device

    def __matmul__(self, v: Tensor) -> Tensor:
        if v.dim() == 2:
            return torch.stack([self @ column for column in v.T], 1)
        sizes = [p.numel() for p in self.params]
        pieces = [piece.view_as(p) for piece, p in zip(v.to(self.dtype).split(sizes), self.params)]
        n = self.inputs.shape[0]
        result = torch.zeros(self.shape[0], dtype=self.dtype, device=self.device)
        with probe_mode(self.model):
            for start in range(0, n, self.chunk_size):
                x = self.inputs[start : start + self.chunk_size]
                y = self.labels[start : start + self.chunk_size]
                loss = F.cross_entropy(self.model(x), y, reduction="sum") / n
                grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
                directional = sum(
                    (g * piece).sum() for g, piece in zip(grads, pieces) if g is not None and g.requires_grad
                )
                if not isinstance(directional, Tensor):  # the gradient does not depend on w: H = 0
                    continue
                hv = torch.autograd.grad(directional, self.params, allow_unused=True)
                result += torch.cat(
                    [(torch.zeros_like(p) if h is None else h).flatten() for h, p in zip(hv, self.params)]
                )
        return result


def _default_generator(generator: torch.Generator | None) -> torch.Generator:
    # A fixed private stream rather than the global RNG, which training owns.
    return generator if generator is not None else torch.Generator().manual_seed(0)


def top_eigenvalues(
    operator,
    k: int = 1,
    tolerance: float = 1e-3,
    max_iterations: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The k largest (algebraic) eigenvalues of a symmetric operator, descending, float64.

    Lanczos (ARPACK's implicitly restarted variant via ``scipy.sparse.linalg.eigsh``) with a starting
    vector drawn from ``generator``; ``tolerance`` is the relative accuracy of the eigenvalues (0: machine
    precision). Below k + 2 dimensions the operator is made dense and solved exactly. Eigenvalues that
    did not converge are NaN, with a warning.

    >>> top_eigenvalues(torch.diag(torch.tensor([3.0, -5.0, 1.0])), k=2).tolist()
    [3.0, 1.0]
    """
    n = operator.shape[0]
    dtype = getattr(operator, "dtype", torch.float64)
    device = getattr(operator, "device", torch.device("cpu"))
    if n < k + 2:  # ARPACK needs k < n - 1 for a Krylov space; tiny problems are cheap to densify
        dense = (operator @ torch.eye(n, dtype=dtype, device=device)).double().cpu()
        return torch.linalg.eigvalsh((dense + dense.T) / 2).flip(0)[:k]

    def matvec(x: np.ndarray) -> np.ndarray:
        v = torch.from_numpy(np.ascontiguousarray(x).reshape(-1)).to(device=device, dtype=dtype)
        return (operator @ v).double().cpu().numpy()

    linear = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    generator = _default_generator(generator)
    start = torch.randn(n, generator=generator, dtype=torch.float64, device=generator.device).cpu().numpy()
    try:
        values = eigsh(
            linear, k=k, which="LA", tol=tolerance, maxiter=max_iterations, v0=start, return_eigenvectors=False
        )
    except ArpackNoConvergence as error:
        warnings.warn(f"Lanczos converged for {len(error.eigenvalues)} of {k} eigenvalues", RuntimeWarning)
        values = np.concatenate([np.real(error.eigenvalues), np.full(k - len(error.eigenvalues), np.nan)])
    except ArpackError as error:  # e.g. a non-finite operator
        warnings.warn(f"Lanczos failed: {error}", RuntimeWarning)
        values = np.full(k, np.nan)
    return torch.from_numpy(np.sort(values)[::-1].copy())


def hutchinson_trace(operator, samples: int, generator: torch.Generator | None = None) -> float:
    """Hutchinson's unbiased estimate ``tr A ~ (1/s) sum_j v_j^T A v_j``, Rademacher ``v_j`` from ``generator``.

    Its variance is ``2 (||A||_F^2 - sum_i A_ii^2) / s`` for symmetric A.

    >>> hutchinson_trace(torch.diag(torch.tensor([1.0, 2.0, 3.0])), samples=1)
    6.0
    """
    n = operator.shape[0]
    dtype = getattr(operator, "dtype", torch.float64)
    device = getattr(operator, "device", torch.device("cpu"))
    generator = _default_generator(generator)
    total = 0.0
    for _ in range(samples):
        signs = torch.randint(0, 2, (n,), generator=generator, device=generator.device) * 2 - 1
        v = signs.to(device=device, dtype=dtype)
        total += float(v.double() @ (operator @ v).double())
    return total / samples


def hessian_metrics(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    options: HessianOptions | None = None,
    *,
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Curvature of the mean cross-entropy on the probe set.

    Keys: ``curvature/lambda_h1`` ... ``curvature/lambda_h<top_k>`` (largest first) and
    ``curvature/trace_h`` (Hutchinson, ``trace_samples`` Hessian-vector products).
    """
    options = options or HessianOptions()
    operator = HessianOperator(model, inputs, labels, chunk_size)
    metrics: dict[str, float] = {}
    if options.top_k > 0:
        values = top_eigenvalues(
            operator, options.top_k, options.tolerance, options.max_iterations, generator
        )
        metrics.update({f"curvature/lambda_h{i + 1}": float(v) for i, v in enumerate(values)})
    if options.trace_samples > 0:
        metrics["curvature/trace_h"] = hutchinson_trace(operator, options.trace_samples, generator)
    return metrics
