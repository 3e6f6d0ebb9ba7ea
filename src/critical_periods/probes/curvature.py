"""Curvature of the training loss: top Hessian eigenvalues (Lanczos) and the Hessian trace (Hutchinson).

As in curvlinops: the Hessian is a small operator object supporting ``H @ v``; the estimators are plain
functions of anything with ``@``, ``shape`` (and optionally ``dtype``/``device``), a torch tensor
included, so they can be checked on a small dense matrix before they meet a network.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from critical_periods.probes.affine_batch_norm import batch_norm_as_affine
from critical_periods.probes.context import check_class_logits, probe_mode
from critical_periods.record import metric_names as names
from critical_periods.config.validation import not_allowed
from critical_periods.stopping import raise_if_stop_requested
from critical_periods.vocabulary import LanczosStopping


@dataclass
class HessianOptions:
    """top_k: eigenvalues lambda_H^1..k (0: none); tolerance: relative residual at which Lanczos stops;
    max_iterations: at most that many Hessian-vector products for Lanczos; basis_size: at most that
    many stored Lanczos vectors (thick restart when full; see :func:`top_eigenvalues`);
    trace_samples: Rademacher vectors (Hessian-vector products) for Hutchinson's tr H (0: skip);
    warm_start: start Lanczos from the previous probe's top Ritz vectors (the callback keeps them
    between probes) instead of a random vector: fewer products when the weights moved little, but a
    probe's value then depends on the previous probe too (to within ``tolerance``), so a resumed or
    branched run no longer reproduces it bit for bit. stopping: ``residual`` (the default) or
    ``value``: stop once the top Ritz values moved by at most ``tolerance`` (relative) in one step,
    the rule of power iteration (PyHessian): about half the products, but on a clustered top of the
    spectrum it can stop well below the eigenvalue, as power iteration does (a Ritz value only rises;
    measured at tolerance 1e-3 on the 512-wide MLP at initialisation, whose top two eigenvalues lie
    1.8% apart: up to 1.7e-2 below over 5 starts, PyHessian up to 2.5e-2)."""

    top_k: int = 1
    tolerance: float = 1e-3
    max_iterations: int = 100
    basis_size: int = 20
    trace_samples: int = 10
    warm_start: bool = False
    stopping: str = LanczosStopping.RESIDUAL.value

    def __post_init__(self) -> None:
        if self.stopping not in LanczosStopping.values():
            raise not_allowed("probes.hessian.stopping", self.stopping, " or ".join(LanczosStopping.values()))


class HessianOperator:
    """``v -> H v`` with ``H`` the Hessian of ``L(w) = (1/N) sum_i CE(f_w(x_i), y_i)`` (mean reduction).

    ``w`` is the trainable parameters flattened in ``model.parameters()`` order. Each product is a
    double backward pass per chunk of ``chunk_size`` examples, in eval mode (see ``probe_mode``),
    leaving ``.grad`` alone. ``v`` may be (P,) or (P, k). When the probe set is a single chunk, the
    graph of the first-order gradient is built once and kept for later products (a third cheaper);
    the operator is then a snapshot of the weights it first saw. BatchNorm layers with running
    statistics enter that graph as the affine maps they are in eval mode (:mod:`.affine_batch_norm`).

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
        self._single_chunk_gradient: list[Tensor | None] | None = None

    def _gradient_with_graph(self, start: int) -> list[Tensor | None]:
        """grad_w of this chunk's share of the mean loss, differentiable once more."""
        single_chunk = self.chunk_size >= self.inputs.shape[0]
        if single_chunk and self._single_chunk_gradient is not None:
            return self._single_chunk_gradient
        x = self.inputs[start : start + self.chunk_size]
        y = self.labels[start : start + self.chunk_size]
        with batch_norm_as_affine(self.model):  # a cheaper graph to differentiate in every product
            logits = check_class_logits(self.model(x), x.shape[0])
        loss = F.cross_entropy(logits, y, reduction="sum") / self.inputs.shape[0]
        gradient = list(torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True))
        if single_chunk:
            self._single_chunk_gradient = gradient
        return gradient

    def __matmul__(self, v: Tensor) -> Tensor:
        if v.dim() == 2:
            return torch.stack([self @ column for column in v.T], 1)
        sizes = [p.numel() for p in self.params]
        pieces = [piece.view_as(p) for piece, p in zip(v.to(self.dtype).split(sizes), self.params)]
        result: Tensor | None = None  # the first chunk's product itself: no zeros to add it to
        with probe_mode(self.model):
            for start in range(0, self.inputs.shape[0], self.chunk_size):
                gradient = self._gradient_with_graph(start)
                pairs = [(g, piece) for g, piece in zip(gradient, pieces) if g is not None and g.requires_grad]
                if not pairs:  # the gradient does not depend on w: H = 0
                    continue
                # The backward pass seeded with v itself: the same bits as differentiating <g, v>,
                # without building and differentiating that sum (2-12% of a product, measured).
                outputs, seeds = zip(*pairs)
                hv = torch.autograd.grad(outputs, self.params, grad_outputs=seeds, retain_graph=True, allow_unused=True)
                flat = torch.cat([(torch.zeros_like(p) if h is None else h).flatten() for h, p in zip(hv, self.params)])
                result = flat if result is None else result.add_(flat)
        return result if result is not None else torch.zeros(self.shape[0], dtype=self.dtype, device=self.device)


def _default_generator(generator: torch.Generator | None) -> torch.Generator:
    # A fixed private stream rather than the global RNG, which training owns.
    return generator if generator is not None else torch.Generator().manual_seed(0)


@dataclass
class LanczosResult:
    """values: (k,) float64, descending; vectors: (k, n) their Ritz vectors, unit norm, in the operator's
    dtype; iterations: operator products taken."""

    values: Tensor
    vectors: Tensor
    iterations: int


def top_eigenvalues(
    operator,
    k: int = 1,
    tolerance: float = 1e-3,
    max_iterations: int = 100,
    generator: torch.Generator | None = None,
    basis_size: int = 20,
) -> Tensor:
    """The k largest (algebraic) eigenvalues of a symmetric operator, descending, float64:
    ``lanczos(...).values`` (see :func:`lanczos`).

    >>> A = torch.diag(torch.tensor([3.0, -5.0, 1.0, 0.5], dtype=torch.float64))
    >>> [round(value, 12) for value in top_eigenvalues(A, k=2).tolist()]
    [3.0, 1.0]
    """
    return lanczos(operator, k, tolerance, max_iterations, generator, basis_size).values


class _ThickRestartBasis:
    """The Lanczos basis V (rows, orthonormal) and the projection ``T = V^T A V`` of :func:`lanczos`.

    ``expand`` adds ``v_{j+1} ~ (I - V V^T) A v_j`` (to within sqrt(eps), then to rounding: see there)
    and records the coefficients in T; ``restart`` keeps the top ``keep`` Ritz vectors and the newest
    direction when V is full (Wu & Simon 2000), with the Ritz values on T's diagonal and the coupling
    ``beta s_i`` (``A x_i = theta_i x_i + beta s_i v_new``) in its last row and column.
    """

    def __init__(self, operator, first: Tensor, size: int, keep: int) -> None:
        n = operator.shape[0]
        self.operator, self.size, self.keep = operator, size, keep
        self.vectors = torch.empty(size + 1, n, dtype=first.dtype, device=first.device)
        self.vectors[0] = first / first.norm()
        self.projected = torch.zeros(size, size, dtype=torch.float64)
        self.j = 0  # basis vectors whose products are in `projected`
        self.coupled_from = 0  # the first basis vector T couples v_j to (see expand)
        self.full_reorthogonalisation = False  # against all of V, once semi-orthogonality is at risk
        self._ritz: tuple[Tensor, Tensor] | None = None  # eigh of T, until T changes

    def expand(self) -> tuple[Tensor, Tensor]:
        """``(w, coefficients)``: A v_j orthogonalised against V, and its coefficients (now in T).

        First against the vectors A v_j is coupled to in exact arithmetic (v_j and v_{j-1}; after a
        restart every kept Ritz vector). That alone keeps V orthogonal to within sqrt(eps) until some
        Ritz pair's residual falls below ``sqrt(eps) max |theta|`` (Paige: V then loses orthogonality
        along that Ritz vector at a rate ``eps ||A|| / residual``, and a spurious copy of its value
        follows). From then on, for good, a second pass against all of V follows: the full
        reorthogonalisation ("twice is enough"). Before it a step reads v_j and v_{j-1} instead of
        all of V four times: at 0.55M parameters (the 512-wide MLP) 4-6 ms less a step, against ~50 ms
        a Hessian-vector product. Measured on that MLP and on Conv1DNet over five starts each: never
        switched on at tolerances 1e-2 and 1e-3, switched on after 14-18 steps at 1e-5."""
        j, basis = self.j, self.vectors
        w = self.operator @ basis[j]
        coefficients = torch.zeros(j + 1, dtype=basis.dtype, device=basis.device)
        coupled = slice(self.coupled_from, j + 1)
        c = basis[coupled] @ w
        w = w - basis[coupled].T @ c
        coefficients[coupled] = c
        self._record(coefficients)
        self.full_reorthogonalisation = self.full_reorthogonalisation or self._orthogonality_at_risk(w)
        if self.full_reorthogonalisation:
            c = basis[: j + 1] @ w
            w = w - basis[: j + 1].T @ c
            coefficients += c
            self._record(coefficients)
        return w, coefficients

    def _record(self, coefficients: Tensor) -> None:
        j = self.j
        self.projected[j, : j + 1] = self.projected[: j + 1, j] = coefficients.double().cpu()
        self._ritz = None

    def _orthogonality_at_risk(self, w: Tensor) -> bool:
        """Some Ritz pair of T, extended by ``w``, has a residual below ``sqrt(eps) max |theta|``."""
        values, vectors = self.ritz()
        residuals = float(w.norm()) * vectors[-1].abs()
        return bool(residuals.min() <= math.sqrt(torch.finfo(self.vectors.dtype).eps) * values.abs().max())

    def ritz(self) -> tuple[Tensor, Tensor]:
        """Eigenvalues (ascending) and eigenvectors of the current projection T."""
        if self._ritz is None:  # the guard in expand and the caller ask for the same T
            self._ritz = torch.linalg.eigh(self.projected[: self.j + 1, : self.j + 1])
        return self._ritz

    def combine(self, coefficients: Tensor) -> Tensor:
        """The vectors ``coefficients^T V`` (coefficients: (j + 1, m))."""
        basis = self.vectors
        return coefficients.T.to(dtype=basis.dtype, device=basis.device) @ basis[: self.j + 1]

    def append(self, w: Tensor, beta: float, ritz_values: Tensor, ritz_vectors: Tensor) -> None:
        """Add ``w / beta`` as the next vector, restarting first-thing when V is then full."""
        torch.div(w, beta, out=self.vectors[self.j + 1])
        self.j += 1
        self.coupled_from, self._ritz = self.j - 1, None
        if self.j < self.size:
            return
        keep, basis = self.keep, self.vectors
        kept = ritz_vectors.flip(1)[:, :keep]  # (size, keep)
        basis[:keep] = kept.T.to(dtype=basis.dtype, device=basis.device) @ basis[: self.size]
        basis[keep] = basis[self.size]
        coupling = beta * kept[-1]
        self.projected.zero_()
        self.projected[:keep, :keep] = torch.diag(ritz_values.flip(0)[:keep])
        self.projected[:keep, keep] = self.projected[keep, :keep] = coupling
        self.j, self.coupled_from = keep, 0


def _start_vector(n: int, dtype, device, generator: torch.Generator, start: Tensor | None) -> Tensor:
    if start is not None:
        return start.reshape(-1, n).to(device, torch.float64).sum(0).to(dtype)
    return torch.randn(n, generator=generator, dtype=torch.float64, device=generator.device).to(device, dtype)


def _converged(beta: float, ritz_values: Tensor, ritz_vectors: Tensor, k: int, tolerance: float,
               rounding: float, previous: Tensor | None = None) -> bool:
    """The Krylov space is invariant, or the residual bounds ``|beta s_j|`` of the top k Ritz pairs
    are below ``tolerance * |theta|`` (never below rounding); with ``previous`` (the last step's top k
    Ritz values: ``stopping=value``), the top k values moved by at most ``tolerance * |theta|``."""
    top = ritz_values.flip(0)[:k]
    residuals = (beta * ritz_vectors[-1].flip(0)[:k]).abs()
    scale = float(ritz_values.abs().max())
    if beta <= rounding * max(scale, 1e-30):
        return True
    if previous is not None:
        return len(top) == len(previous) == k and bool(((top - previous).abs() <= tolerance * top.abs()).all())
    return len(top) == k and bool((residuals <= torch.clamp(tolerance * top.abs(), min=rounding * scale)).all())


def lanczos(operator, k: int = 1, tolerance: float = 1e-3, max_iterations: int = 100,
            generator: torch.Generator | None = None, basis_size: int = 20, start: Tensor | None = None,
            stopping: str = LanczosStopping.RESIDUAL.value) -> LanczosResult:
    """The k largest (algebraic) eigenvalues of a symmetric operator, descending, float64.

    Thick-restart Lanczos, orthogonalised locally and in full once a converged Ritz vector would
    otherwise creep back (:class:`_ThickRestartBasis`), in the operator's dtype and on its device;
    stops when :func:`_converged`, or after ``max_iterations`` products (with a warning; a non-finite
    operator gives NaN). Memory: ``basis_size + 1`` vectors of
    length n, twice that during a restart (ResNet-18, float32, basis 20: about 1.8 GB at the peak).
    Starts from a vector drawn from ``generator``, or from ``start`` ((n,) or (m, n): their sum, e.g.
    the previous probe's Ritz vectors). A pending stop request is honoured between iterations. (Not
    ARPACK's ``eigsh``: it reorthogonalises on the host in float64, twice a Hessian-vector product
    per step at 0.5M parameters, and would copy every vector off a GPU.)

    >>> A = torch.diag(torch.tensor([3.0, -5.0, 1.0, 0.5], dtype=torch.float64))
    >>> result = lanczos(A, k=1, tolerance=1e-10, start=torch.tensor([1.0, 0.1, 0.1, 0.1]).double())
    >>> round(float(result.values[0]), 12), result.vectors[0].abs().argmax().item()
    (3.0, 0)
    """
    n = operator.shape[0]
    dtype = getattr(operator, "dtype", torch.float64)
    device = getattr(operator, "device", torch.device("cpu"))
    size = min(n, max(basis_size, k + 2))  # room for k Ritz vectors and a direction to improve them
    first = _start_vector(n, dtype, device, _default_generator(generator), start)
    basis = _ThickRestartBasis(operator, first, size, keep=min(k + (size - k) // 2, size - 1))
    rounding = 100 * torch.finfo(dtype).eps
    top = torch.empty(0, dtype=torch.float64)
    top_vectors = torch.empty(0, n, dtype=dtype, device=device)
    for iterations in range(1, max_iterations + 1):
        raise_if_stop_requested()
        w, coefficients = basis.expand()
        beta = float(w.norm())
        if not (math.isfinite(beta) and bool(torch.isfinite(coefficients).all())):
            warnings.warn("Lanczos met a non-finite operator product", RuntimeWarning)
            return LanczosResult(torch.full((k,), float("nan"), dtype=torch.float64), top_vectors, iterations)
        ritz_values, ritz_vectors = basis.ritz()
        previous, top = top, ritz_values.flip(0)[:k]
        converged = _converged(beta, ritz_values, ritz_vectors, k, tolerance, rounding,
                               previous if stopping == LanczosStopping.VALUE else None)
        if converged or iterations == max_iterations:  # before a restart rewrites the basis
            top_vectors = basis.combine(ritz_vectors.flip(1)[:, :k])
        if converged:
            break
        basis.append(w, beta, ritz_values, ritz_vectors)
    else:
        iterations = max_iterations
        warnings.warn(f"Lanczos did not converge to tolerance {tolerance} in {max_iterations} iterations", RuntimeWarning)
    if len(top) < k:  # the start vector lay in an invariant subspace smaller than k
        top = torch.cat([top, torch.full((k - len(top),), float("nan"), dtype=torch.float64)])
    return LanczosResult(top, top_vectors, iterations)


def hutchinson_trace(operator, samples: int, generator: torch.Generator | None = None) -> float:
    """Hutchinson's unbiased estimate ``tr A ~ (1/s) sum_j v_j^T A v_j``, Rademacher ``v_j`` from ``generator``.

    Its variance is ``2 (||A||_F^2 - sum_i A_ii^2) / s`` for symmetric A. A pending stop request is
    honoured between samples.

    >>> hutchinson_trace(torch.diag(torch.tensor([1.0, 2.0, 3.0])), samples=1)
    6.0
    """
    n = operator.shape[0]
    dtype = getattr(operator, "dtype", torch.float64)
    device = getattr(operator, "device", torch.device("cpu"))
    generator = _default_generator(generator)
    total = 0.0
    for _ in range(samples):
        raise_if_stop_requested()
        # Drawn in the operator's dtype and turned into +-1 in place: the same draws as integer ones,
        # without three vector-sized temporaries per sample (they cost ~10% of a small net's product).
        v = torch.randint(0, 2, (n,), generator=generator, device=generator.device, dtype=dtype).mul_(2).sub_(1)
        v = v.to(device)
        # v is +-1, so v * Av is exact in the operator's dtype; the sum accumulates in float64
        total += float((v * (operator @ v)).sum(dtype=torch.float64))
    return total / samples


def hessian_metrics(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    options: HessianOptions | None = None,
    *,
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
    start: Tensor | None = None,
    eigenvectors: list[Tensor] | None = None,
) -> dict[str, float]:
    """Curvature of the mean cross-entropy on the probe set.

    Keys: ``curvature/lambda_h1`` ... ``curvature/lambda_h<top_k>`` (largest first) and
    ``curvature/trace_h`` (Hutchinson, ``trace_samples`` Hessian-vector products). ``start``: the
    Lanczos start (see :func:`lanczos`; used when ``options.warm_start``); the top Ritz vectors
    found are appended to ``eigenvectors`` when it is given, to start the next probe from.
    """
    options = options or HessianOptions()
    operator = HessianOperator(model, inputs, labels, chunk_size)
    metrics: dict[str, float] = {}
    if options.top_k > 0:
        usable = start is not None and options.warm_start and start.shape[-1] == operator.shape[0]
        result = lanczos(
            operator, options.top_k, options.tolerance, options.max_iterations, generator, options.basis_size,
            start=start if usable else None, stopping=options.stopping,
        )
        if eigenvectors is not None and len(result.vectors):
            eigenvectors.append(result.vectors)
        metrics.update({names.lambda_h(i + 1): float(v) for i, v in enumerate(result.values)})
    if options.trace_samples > 0:
        metrics[names.TRACE_H] = hutchinson_trace(operator, options.trace_samples, generator)
    return metrics
