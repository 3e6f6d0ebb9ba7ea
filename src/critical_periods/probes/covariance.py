"""The gradient covariance K of the break-even point (Jastrzebski et al. 2020), and the mean gradient
(Achille et al. 2019, Fig. 6).

K is the covariance of the gradients the optimiser sees. The paper estimates it from L mini-batch
gradients of a fixed batch size B (B = 128 whatever the training batch size, L B about 5% of the
training set): :func:`minibatch_covariance_metrics`. The covariance of per-example gradients (B = 1)
is a different matrix (about B times larger, with a long continuous tail of small eigenvalues) and is
kept as an option under names of its own: :func:`per_example_covariance_metrics`.

Both come from a Gram matrix of n gradients: K (P x P) and the centred n x n Gram matrix divided by n
share their nonzero eigenvalues, so every statistic costs one n x n eigensolve.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from critical_periods.record import metric_names as names
from critical_periods.probes.context import check_class_logits, probe_mode
from critical_periods.stopping import raise_if_stop_requested


@dataclass
class CovarianceOptions:
    """K from ``batches`` (L) disjoint mini-batches of ``batch_size`` (B) clean training examples, drawn
    once per run by its seed (the paper: B = 128 kept fixed when the training batch size varies,
    L B about 5% of the training set). ``per_example``: also K of the per-example gradients on the
    probe set (B = 1), logged under ``break_even/per_example/*``."""

    batch_size: int = 128
    batches: int = 25
    per_example: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(
                f"probes.covariance.batch_size={self.batch_size!r} is not allowed: it must be a whole number >= 1"
            )
        if not isinstance(self.batches, int) or self.batches < 2:
            raise ValueError(
                f"probes.covariance.batches={self.batches!r} is not allowed: it must be a whole number >= 2 "
                "(a covariance of fewer than two gradients has no nonzero eigenvalue)"
            )


def covariance_spectrum(gram: Tensor) -> Tensor:
    """Eigenvalues of ``K = (1/n) sum_l (g_l - g)(g_l - g)^T`` from the (n, n) Gram matrix of the g_l, descending.

    ``g = (1/n) sum_l g_l``. K and ``H G H / n`` (``G_lm = <g_l, g_m>``, ``H = I - 11^T/n`` centres)
    share their nonzero eigenvalues. Returns n values in float64, at most n - 1 of them nonzero.

    >>> g = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)  # two gradients, mean 0
    >>> covariance_spectrum(g @ g.T).tolist()
    [1.0, 0.0]
    """
    gram = gram.double()
    n = gram.shape[0]
    if not torch.isfinite(gram).all():  # eigh may fail to converge on NaN; report NaN instead
        return torch.full((n,), float("nan"), dtype=torch.float64, device=gram.device)
    return torch.linalg.eigvalsh(_centred(gram) / n).flip(0)


def _centred(gram: Tensor) -> Tensor:
    # H G H: the Gram matrix of the g_l - g
    return gram - gram.mean(0, keepdim=True) - gram.mean(1, keepdim=True) + gram.mean()


@dataclass
class CovarianceStatistics:
    """lambda_1: the top eigenvalue of K; lambda_star: its smallest nonzero one, the (n-1)-th (K has
    rank n - 1 for n gradients in general position, which needs P >= n - 1); trace: tr K."""

    lambda_1: float
    lambda_star: float
    trace: float

    @property
    def condition(self) -> float:
        """``lambda_K^* / lambda_K^1`` in (0, 1]; NaN when K = 0 (all gradients equal)."""
        return self.lambda_star / self.lambda_1 if self.lambda_1 > 0 else float("nan")

    @property
    def trace_ratio(self) -> float:
        """``tr K / lambda_K^1`` in [1, n - 1]; NaN when K = 0."""
        return self.trace / self.lambda_1 if self.lambda_1 > 0 else float("nan")


def covariance_statistics(gram: Tensor) -> CovarianceStatistics:
    """The statistics of K from the (n, n) Gram matrix of n >= 2 gradients (see :func:`covariance_spectrum`).

    ``tr K = (1/n) sum_l ||g_l||^2 - ||g||^2``, read off the centred Gram matrix's diagonal.

    >>> g = torch.tensor([[3.0, 0.0], [-3.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    >>> s = covariance_statistics(g @ g.T)
    >>> round(s.lambda_1, 12), round(s.lambda_star, 12), round(s.trace, 12)
    (6.0, 0.222222222222, 6.222222222222)
    """
    n = gram.shape[0]
    if n < 2:
        raise ValueError(f"the covariance of {n} gradient(s) has no nonzero eigenvalue: it needs at least 2")
    spectrum = covariance_spectrum(gram)
    trace = float(_centred(gram.double()).diagonal().sum() / n)
    return CovarianceStatistics(float(spectrum[0]), float(spectrum[n - 2]), trace)


def minibatch_gradients(
    model: nn.Module, inputs: Tensor, labels: Tensor, batch_size: int, chunk_size: int | None = None
) -> Tensor:
    """(L, P) mini-batch gradients ``g_l = grad_w (1/B) sum_{i in batch l} CE(f_w(x_i), y_i)``.

    Batch l is rows ``[l B, (l + 1) B)`` of ``inputs``/``labels`` (their length must be L B). ``w`` is the
    trainable parameters flattened in ``model.parameters()`` order (a tied parameter once, with the sum
    over its uses). One ordinary backward pass per mini-batch (per chunk of ``chunk_size`` examples if
    that is smaller than B), in eval mode (see ``probe_mode``), through ``torch.autograd.grad`` only:
    ``.grad``, the RNG and the train/eval flags are untouched.

    Memory: the L x P result in the parameters' dtype (ResNet-18, 11M parameters, L = 25: 1.1 GB in
    float32) plus one backward pass of a chunk. Time: L B examples forward and backward (25 x 128 =
    3200 examples, the work of 25 training steps at batch 128).
    """
    n, batch = inputs.shape[0], batch_size
    if n % batch:
        raise ValueError(f"{n} examples do not split into mini-batches of {batch}")
    chunk = min(chunk_size or batch, batch)
    params = [p for p in model.parameters() if p.requires_grad]
    sizes = [p.numel() for p in params]
    rows = torch.zeros(n // batch, sum(sizes), dtype=params[0].dtype, device=params[0].device)
    with probe_mode(model):
        for l, row in enumerate(rows):
            for start in range(l * batch, (l + 1) * batch, chunk):
                raise_if_stop_requested()
                stop = min(start + chunk, (l + 1) * batch)
                logits = check_class_logits(model(inputs[start:stop]), stop - start)
                loss = F.cross_entropy(logits, labels[start:stop], reduction="sum") / batch
                grads = torch.autograd.grad(loss, params, allow_unused=True)
                for piece, g in zip(row.split(sizes), grads):
                    if g is not None:
                        piece += g.flatten()
    return rows


def minibatch_covariance_metrics(
    model: nn.Module, inputs: Tensor, labels: Tensor, options: CovarianceOptions, chunk_size: int | None = None
) -> dict[str, float]:
    """Break-even statistics of K from L = ``options.batches`` mini-batch gradients of B = ``options.batch_size``.

    With ``g_l`` the gradient of the mean cross-entropy (true labels) on mini-batch l (see
    :func:`minibatch_gradients`) and ``g = (1/L) sum_l g_l``, ``K_B = (1/L) sum_l (g_l - g)(g_l - g)^T``
    (rank <= L - 1), whose eigenvalues lambda_K^1 >= ... >= lambda_K^{L-1} = lambda_K^* > 0:

    * ``break_even/lambda_k1``: lambda_K^1, the top eigenvalue of K_B;
    * ``break_even/trace_k``: ``tr K_B = (1/L) sum_l ||g_l||^2 - ||g||^2``;
    * ``break_even/cond_k``: ``lambda_K^* / lambda_K^1``, lambda_K^* the smallest nonzero eigenvalue
      (the (L-1)-th); no threshold is involved;
    * ``break_even/trace_k_ratio``: ``tr K_B / lambda_K^1``. It is not a bound on cond_k: with the
      L - 1 nonzero eigenvalues all in [lambda_K^*, lambda_K^1],
      ``(L - 1) cond_k <= trace_k_ratio <= L - 1``, so it bounds (L - 1) times cond_k from above;
    * ``grad/norm``: ``||g||``, the gradient of the mean loss on the L B examples; ``grad/mean`` and
      ``grad/std``: mean and (population) std of the P entries of g.
    """
    rows = minibatch_gradients(model, inputs, labels, options.batch_size, chunk_size)
    stats = covariance_statistics((rows @ rows.T).double())  # products in the parameters' dtype
    g = rows.mean(0, dtype=torch.float64)
    return {
        names.LAMBDA_K1: stats.lambda_1,
        names.TRACE_K: stats.trace,
        names.COND_K: stats.condition,
        names.TRACE_K_RATIO: stats.trace_ratio,
        names.GRAD_NORM: float(g.norm()),
        names.GRAD_MEAN: float(g.mean()),
        names.GRAD_STD: float(g.std(correction=0)),
    }


def per_example_covariance_metrics(gram: Tensor) -> dict[str, float]:
    """The same statistics for the per-example covariance (B = 1) on the N probe examples.

    From the (N, N) Gram matrix of the true-label per-example gradients g_i:
    ``K_1 = (1/N) sum_i (g_i - g)(g_i - g)^T`` (rank <= N - 1), ``break_even/per_example/lambda_k1`` its
    top eigenvalue, ``.../trace_k`` its trace, ``.../cond_k`` the (N-1)-th (smallest nonzero)
    eigenvalue over the top one.
    """
    stats = covariance_statistics(gram)
    return {
        names.PER_EXAMPLE_LAMBDA_K1: stats.lambda_1,
        names.PER_EXAMPLE_TRACE_K: stats.trace,
        names.PER_EXAMPLE_COND_K: stats.condition,
    }
