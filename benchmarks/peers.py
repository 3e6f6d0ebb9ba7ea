"""The probes side by side with the curvature libraries a researcher already knows.

    pip install -e ".[peers]"
    python benchmarks/peers.py --models mlp conv1d --repeats 3          # 26 min (2 cores)
    python benchmarks/peers.py --models resnet18 simple_cnn --repeats 2 --starts 2 \
        --probes lambda_h1 lambda_h1_value_rule lambda_h1_accuracy trace_h   # 27 min
    python benchmarks/peers.py --models mlp --probes fisher_exact --n 32 --repeats 1   # seconds

For each model and probe, the project's probe and each peer that computes the same number run on the
same model (float32, the same weights: each peer gets its own deep copy, since some of them attach
hooks or write ``.grad``), the same examples, in this one process with one torch thread. Repeats
alternate project and peer (the order flips every repeat) after one warm-up each; times are
medians. A row is kept only if the values agree:

* deterministic quantities (exact Fisher, per-layer Fisher, tr K, lambda_K^1): relative tolerance
  ``rtol`` (float32 sums in different orders);
* Hutchinson tr H: the same Rademacher vectors (the peer draws them from a seed the project's
  generator also gets; for curvlinops, whose sampler is its own, the vectors are passed to its
  operator), so agreement to rounding;
* lambda_H^1 from random starts: each call runs ``--starts`` starts (seeds 0, 1, ...; the same seeds
  on both sides), because the number of products an iterative solver takes depends on its start;
* lambda_H^1 with each side's own stopping rule at a tolerance of 1e-3 (the project's Lanczos: a
  relative residual; ARPACK, which curvlinops calls: the same; hessian-eigenthings: residual and
  change; PyHessian: the value's change alone): every start within ``NOMINAL_RTOL`` (3e-2) of the
  top eigenvalue, because power iteration's rule stops it short of the top on a clustered spectrum;
* lambda_H^1 with PyHessian's rule on both sides (the project's ``stopping=value``), the same check;
* lambda_H^1 at a stated accuracy (the usual way iterative eigensolvers are compared): each side
  runs at the loosest tolerance of ``LADDER`` whose answers (every start) lie within ``ACCURACY``
  (1e-3, relative) of the top eigenvalue, chosen on the untimed warm-up call by the same rule for
  both sides; the top eigenvalue is the project's Lanczos at a 1e-7 residual (some eigenvalue lies
  within ``||H x - theta x||`` of theta). The power iterations get up to 1000 iterations here so
  that they can reach it;
* sampled Fisher (one label per example, drawn from the model): the peer draws its own labels, so
  the two estimates must lie within 4 standard deviations of their difference, the standard
  deviation computed from the exact per-example, per-class squared norms.

The output is a Markdown table: time ratio peer / project (above 1: the project is faster), the ratio
of the medians, and the range of the per-repeat ratios (each repeat runs the two back to back).
Inputs are standard normal and labels uniform (agreement and speed do not depend on the data).
"""

from __future__ import annotations

import argparse
import copy
import functools
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from critical_periods.models.cnn import SimpleCNN
from critical_periods.models.conv1d import Conv1DNet
from critical_periods.models.mlp import MLP
from critical_periods.models.resnet import ResNet18
from critical_periods.probes import (
    FisherOptions,
    HessianOptions,
    PerExampleGradients,
    collect_probe_gradients,
    compute_probes,
    per_example_covariance_metrics,
)
from critical_periods.probes.context import probe_mode

CLASSES = 10


@dataclass
class Case:
    make: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    n: int  # default probe-set size
    description: str


CASES = {
    "mlp": Case(lambda: MLP((1, 40), CLASSES, widths=(512, 512, 512)), (1, 40), 512, "MLP 40-512-512-512-10"),
    "conv1d": Case(lambda: Conv1DNet((1, 40), CLASSES, batch_norm=True), (1, 40), 512,
                   "Conv1DNet (3 x Conv1d 32 ch, BatchNorm)"),
    "simple_cnn": Case(lambda: SimpleCNN((3, 32, 32), CLASSES), (3, 32, 32), 256,
                       "SimpleCNN (32, 64 ch; 3x32x32)"),
    "resnet18": Case(lambda: ResNet18((3, 32, 32), CLASSES, width=16), (3, 32, 32), 32,
                     "ResNet-18 width 16 (3x32x32)"),
}

PROBES = ["fisher_exact", "fisher_layers", "fisher_sampled", "lambda_h1", "lambda_h1_value_rule", "lambda_h1_accuracy",
          "trace_h", "covariance"]
PROBE_TITLES = {
    "fisher_exact": "Fisher trace, exact over classes",
    "fisher_layers": "Fisher trace per layer, exact",
    "fisher_sampled": "Fisher trace, sampled labels (m=1)",
    "lambda_h1": "lambda_H^1, each side's own stopping rule at tol 1e-3",
    "lambda_h1_value_rule": "lambda_H^1, both stopping once the value moves < 1e-3 (PyHessian's rule)",
    "lambda_h1_accuracy": "lambda_H^1 within 1e-3 of the top, each at its loosest tolerance that gets there",
    "trace_h": "tr H, Hutchinson (10 vectors)",
    "covariance": "per-example K: lambda_K^1 and tr K",
}
TRACE_SAMPLES = 10
SEED = 0
ACCURACY = 1e-3  # lambda_H^1 at a stated accuracy: relative distance to the top eigenvalue
LADDER = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)  # the tolerances each side may be run at, loosest first
REFERENCE_TOLERANCE = 1e-7  # the top eigenvalue: the project's Lanczos at this relative residual
STARTS = 5  # random starts per lambda_H^1 call, each side (the same seeds for both)
NOMINAL_RTOL = 3e-2  # lambda_H^1 at a 1e-3 stopping rule: every start within this of the top


# --- the project's side -------------------------------------------------------------------------------


def project_fisher(model: nn.Module, x: Tensor, y: Tensor, exact: bool) -> dict[str, float]:
    options = FisherOptions(exact=True) if exact else FisherOptions(samples=1)
    return compute_probes(model, x, y, fisher=options, generator=torch.Generator().manual_seed(SEED)).metrics


def project_hessian(model: nn.Module, x: Tensor, y: Tensor, top_k: int, samples: int, tolerance: float = 1e-3,
                    max_iterations: int = 100, seed: int = SEED, stopping: str = "residual") -> dict[str, float]:
    options = HessianOptions(top_k=top_k, trace_samples=samples, tolerance=tolerance, max_iterations=max_iterations,
                             stopping=stopping)
    return compute_probes(model, x, y, hessian=options, generator=torch.Generator().manual_seed(seed)).metrics


def project_covariance(model: nn.Module, x: Tensor, y: Tensor) -> tuple[float, float]:
    gram = collect_probe_gradients(model, x, y, gram=True).gram
    metrics = per_example_covariance_metrics(gram)
    return metrics["break_even/per_example/lambda_k1"], metrics["break_even/per_example/trace_k"]


def sampled_fisher_std(model: nn.Module, x: Tensor) -> float:
    """Standard deviation of the one-label-per-example estimate of tr F (mean over the N examples),
    from every example's squared gradient norm for every class (float64)."""
    with probe_mode(model):
        per_example = PerExampleGradients(model, x)
        p = per_example.logits.double().softmax(1)
        norms = []
        for c in range(p.shape[1]):
            direction = (p - F.one_hot(torch.full((len(x),), c), p.shape[1]).double()).float()
            norms.append(sum(block.squared_norms() for block in per_example(direction).values()))
    norms = torch.stack(norms, 1)  # (N, C)
    variance = (p * norms.square()).sum(1) - (p * norms).sum(1).square()
    return float(variance.sum().sqrt() / len(x))


# --- the peers ----------------------------------------------------------------------------------------


def _module_of(model: nn.Module, parameter_name: str) -> str:
    return parameter_name.rsplit(".", 1)[0] if "." in parameter_name else "root"


class BackPACK:
    name = "BackPACK"

    def __init__(self, model: nn.Module) -> None:
        from backpack import extend

        # use_converter: BackPACK's second-order extensions need a graph of known modules; it rewrites
        # the models' own forward methods (and ResNet's residual sums) into one with torch.fx.
        self.model = extend(copy.deepcopy(model), use_converter=True)
        self.loss = extend(nn.CrossEntropyLoss())

    def _backward(self, x: Tensor, y: Tensor, *extensions) -> None:
        from backpack import backpack

        for p in self.model.parameters():
            p.grad = None
        with backpack(*extensions):
            self.loss(self.model(x), y).backward()

    def _per_layer(self, attribute: str) -> dict[str, float]:
        layers: dict[str, float] = {}
        for name, p in self.model.named_parameters():
            layer = _module_of(self.model, name)
            layers[layer] = layers.get(layer, 0.0) + float(getattr(p, attribute).sum())
        return layers

    def fisher_layers(self, x: Tensor, y: Tensor) -> dict[str, float]:
        # For cross-entropy the generalised Gauss-Newton is the true Fisher; mean reduction = mean over examples.
        from backpack.extensions import DiagGGNExact

        self._backward(x, y, DiagGGNExact())
        return self._per_layer("diag_ggn_exact")

    def fisher_sampled(self, x: Tensor, y: Tensor) -> float:
        from backpack.extensions import DiagGGNMC

        self._backward(x, y, DiagGGNMC(mc_samples=1))
        return sum(self._per_layer("diag_ggn_mc").values())

    def covariance(self, x: Tensor, y: Tensor) -> tuple[float, float]:
        # per-example gradients of the mean loss are g_i / N: scaled back; K's spectrum from the N x N Gram.
        from backpack.extensions import BatchGrad, Variance

        n = x.shape[0]
        self._backward(x, y, BatchGrad(), Variance())
        rows = torch.cat([p.grad_batch.flatten(1) for p in self.model.parameters()], 1) * n
        centred = rows - rows.mean(0)
        top = float(torch.linalg.eigvalsh((centred @ centred.T).double() / n)[-1])
        trace = float(sum(p.variance.sum() for p in self.model.parameters())) * n * n  # variance of g_i / N
        return top, trace


class NNGeometry:
    name = "nngeometry"

    def __init__(self, model: nn.Module) -> None:
        self.model = copy.deepcopy(model)

    def fisher_exact(self, x: Tensor, y: Tensor) -> float:
        from nngeometry.metrics import FIM
        from nngeometry.object import PMatDiag
        from torch.utils.data import DataLoader, TensorDataset

        loader = DataLoader(TensorDataset(x, y), batch_size=len(x))
        return float(FIM(self.model, loader, PMatDiag, variant="classif_logits").trace())


class PyHessian:
    name = "PyHessian"

    def __init__(self, model: nn.Module) -> None:
        self.model = copy.deepcopy(model)

    def _hessian(self, x: Tensor, y: Tensor):
        from pyhessian import hessian

        for p in self.model.parameters():
            p.grad = None  # it accumulates its gradient graph into .grad
        return hessian(self.model, nn.CrossEntropyLoss(), data=(x, y), cuda=False)

    def lambda_h1(self, x: Tensor, y: Tensor, tol: float = 1e-3, max_iter: int = 100, seed: int = SEED) -> float:
        torch.manual_seed(seed)  # its start vector comes from the global RNG
        values, _ = self._hessian(x, y).eigenvalues(maxIter=max_iter, tol=tol, top_n=1)
        return float(values[0])

    def trace_h(self, x: Tensor, y: Tensor) -> float:
        # Its Rademacher draws from the global RNG, parameter by parameter, are the project's draws
        # from a generator with the same seed. tol=-inf: exactly TRACE_SAMPLES vectors (its stopping
        # test divides by the running estimate, which may be negative, so any finite tol can stop it).
        torch.manual_seed(SEED)
        return statistics.fmean(self._hessian(x, y).trace(maxIter=TRACE_SAMPLES, tol=-math.inf))


class Curvlinops:
    name = "curvlinops"

    def __init__(self, model: nn.Module) -> None:
        self.model = copy.deepcopy(model)

    def _operator(self, x: Tensor, y: Tensor):
        from curvlinops import HessianLinearOperator

        params = [p for p in self.model.parameters() if p.requires_grad]
        return HessianLinearOperator(self.model, nn.CrossEntropyLoss(), params, [(x, y)], check_deterministic=False)

    def lambda_h1(self, x: Tensor, y: Tensor, tol: float = 1e-3, max_iter: int | None = None,
                  seed: int = SEED) -> float:
        import numpy as np
        from scipy.sparse.linalg import eigsh

        operator = self._operator(x, y).to_scipy()
        start = np.random.default_rng(seed).standard_normal(operator.shape[0]).astype(operator.dtype)
        return float(eigsh(operator, k=1, which="LA", tol=tol, maxiter=max_iter, v0=start)[0][0])

    def trace_h(self, x: Tensor, y: Tensor) -> float:
        # curvlinops.hutchinson_trace's computation, with the project's vectors (its sampler is its own)
        operator = self._operator(x, y)
        generator = torch.Generator().manual_seed(SEED)
        vectors = torch.stack([
            (torch.randint(0, 2, (operator.shape[0],), generator=generator) * 2 - 1).float()
            for _ in range(TRACE_SAMPLES)
        ], 1)
        return float(torch.einsum("ij,ij", vectors, operator @ vectors) / TRACE_SAMPLES)


class HessianEigenthings:
    name = "hessian-eigenthings"

    def __init__(self, model: nn.Module) -> None:
        self.model = copy.deepcopy(model).eval()

    def _operator(self, x: Tensor, y: Tensor):
        from hessian_eigenthings import HessianOperator, supervised_loss

        return HessianOperator(self.model, [(x, y)], supervised_loss(F.cross_entropy))

    def lambda_h1(self, x: Tensor, y: Tensor, tol: float = 1e-3, max_iter: int = 100, seed: int = SEED) -> float:
        from hessian_eigenthings import power_iteration_one

        value, *_ = power_iteration_one(self._operator(x, y), max_iter=max_iter, tol=tol, seed=seed)
        return float(value)

    def trace_h(self, x: Tensor, y: Tensor) -> float:
        from hessian_eigenthings import hutchinson

        return hutchinson(self._operator(x, y), num_samples=TRACE_SAMPLES, seed=SEED).estimate


PEERS = {"backpack": BackPACK, "nngeometry": NNGeometry, "pyhessian": PyHessian, "curvlinops": Curvlinops,
         "hessian_eigenthings": HessianEigenthings}


# --- comparisons --------------------------------------------------------------------------------------


@dataclass
class Comparison:
    """One probe on one model, against one peer: the two computations and how their values must agree."""

    probe: str
    peer: str
    project: Callable[[], object]
    other: Callable[[], object]
    agree: Callable[[object, object], tuple[bool | None, str]]  # (agrees, what was checked); None: n/a


def relative(rtol: float):
    def agree(ours, theirs) -> tuple[bool, str]:
        ours, theirs = (ours if isinstance(ours, (tuple, list)) else [ours]), (
            theirs if isinstance(theirs, (tuple, list)) else [theirs])
        worst = max(abs(a - b) / max(abs(a), 1e-30) for a, b in zip(ours, theirs))
        return worst <= rtol, f"rel. diff {worst:.1e} <= {rtol:g}"

    return agree


def per_layer(rtol: float):
    def agree(ours: dict[str, float], theirs: dict[str, float]) -> tuple[bool, str]:
        if ours.keys() != theirs.keys():
            return False, f"layers differ: {sorted(ours)} vs {sorted(theirs)}"
        return relative(rtol)([ours[k] for k in ours], [theirs[k] for k in ours])

    return agree


def over_starts(compute: Callable[[int], float], starts: int) -> list[float]:
    """One lambda_H^1 per random start (seeds SEED, SEED + 1, ...): how many products an iterative
    solver takes depends on its start (PyHessian on the MLP: 14-34 over ten starts), so one start
    would time one draw of that count."""
    return [compute(SEED + start) for start in range(starts)]


def worst_error(values: list[float], top: float) -> float:
    return max(abs(value - top) / abs(top) for value in values)


def near_top(top: Callable[[], float], rtol: float):
    """Every start of both sides lies within ``rtol`` (relative) of the top eigenvalue. Power
    iteration converges to the eigenvalue of largest magnitude: when that is a negative one, the peer
    answers another question than lambda_H^1 (the largest), and the row is not comparable."""

    def agree(ours: list[float], theirs: list[float]) -> tuple[bool | None, str]:
        if min(theirs) < 0 < top():
            return None, f"n/a: power iteration found the largest-magnitude eigenvalue, {min(theirs):.3g} < 0"
        mine, peer = worst_error(ours, top()), worst_error(theirs, top())
        return max(mine, peer) <= rtol, (f"worst of {len(ours)} starts from the top: project {mine:.1e}, "
                                         f"peer {peer:.1e} (<= {rtol:g})")

    return agree


class AtAccuracy:
    """One side's lambda_H^1 (every start) at the loosest tolerance of ``LADDER`` whose values all lie
    within ``ACCURACY`` of the top eigenvalue. The first call (the untimed warm-up) walks the ladder;
    later calls repeat the chosen setting, so the timed calls do exactly the work of that one setting."""

    def __init__(self, compute: Callable[[float], list[float]], top: Callable[[], float]) -> None:
        self.compute, self.top = compute, top
        self.tolerance: float | None = None
        self.error = math.inf

    def __call__(self) -> list[float]:
        if self.tolerance is None:
            for tolerance in LADDER:
                values = self.compute(tolerance)
                self.tolerance, self.error = tolerance, worst_error(values, self.top())
                # reached; or power iteration found a negative eigenvalue of larger magnitude, which
                # no tighter tolerance changes
                if self.error <= ACCURACY or min(values) * self.top() < 0:
                    break
            return values
        return self.compute(self.tolerance)

    def describe(self) -> str:
        return f"tol {self.tolerance:g}, worst error {self.error:.1e}"


def both_within_accuracy(ours_side: AtAccuracy, theirs_side: AtAccuracy):
    def agree(ours: list[float], theirs: list[float]) -> tuple[bool | None, str]:
        check = f"project {ours_side.describe()}; peer {theirs_side.describe()}"
        if theirs_side.error > ACCURACY:  # no setting of the peer gets there: no time to compare
            return None, f"n/a: the peer does not reach {ACCURACY:g} ({check})"
        return ours_side.error <= ACCURACY, check

    return agree


def within_ci(std: float, z: float = 4.0):
    def agree(ours: float, theirs: float) -> tuple[bool, str]:
        bound = z * math.sqrt(2) * std  # the difference of two independent estimates
        return abs(ours - theirs) <= bound, f"|diff| {abs(ours - theirs):.2e} <= {z:g} sd = {bound:.2e}"

    return agree


def comparisons(model: nn.Module, x: Tensor, y: Tensor, probes: list[str], peers: list[str],
                starts: int = STARTS) -> list[Comparison]:
    made = {name: PEERS[name](model) for name in peers}
    rows: list[Comparison] = []

    def add(probe: str, peer: str, project, other, agree) -> None:
        if probe in probes and peer in made:
            rows.append(Comparison(probe, made[peer].name, project, other, agree))

    def fisher_layers() -> dict[str, float]:
        metrics = project_fisher(model, x, y, exact=True)
        return {k.removeprefix("fisher/trace/"): v for k, v in metrics.items() if k.startswith("fisher/trace/")}

    fisher_total = lambda: project_fisher(model, x, y, exact=True)["fisher/trace"]  # noqa: E731
    top = functools.cache(lambda: project_hessian(model, x, y, 1, 0, REFERENCE_TOLERANCE, max_iterations=300)[
        "curvature/lambda_h1"])
    if "backpack" in made:
        backpack = made["backpack"]
        add("fisher_exact", "backpack", fisher_total, lambda: sum(backpack.fisher_layers(x, y).values()),
            relative(1e-4))
        add("fisher_layers", "backpack", fisher_layers, lambda: backpack.fisher_layers(x, y), per_layer(1e-4))
        if "fisher_sampled" in probes:
            add("fisher_sampled", "backpack", lambda: project_fisher(model, x, y, exact=False)["fisher/trace"],
                lambda: backpack.fisher_sampled(x, y), within_ci(sampled_fisher_std(model, x)))
        add("covariance", "backpack", lambda: project_covariance(model, x, y), lambda: backpack.covariance(x, y),
            relative(1e-4))
    if "nngeometry" in made:
        add("fisher_exact", "nngeometry", fisher_total, lambda: made["nngeometry"].fisher_exact(x, y),
            relative(1e-4))

    def ours_at(tolerance: float, stopping: str = "residual") -> list[float]:
        return over_starts(lambda seed: project_hessian(model, x, y, 1, 0, tolerance, seed=seed, stopping=stopping)[
            "curvature/lambda_h1"], starts)

    for peer in ("pyhessian", "curvlinops", "hessian_eigenthings"):
        if peer in made:
            side = made[peer]
            theirs_nominal = lambda side=side: over_starts(lambda seed: side.lambda_h1(x, y, seed=seed), starts)  # noqa: E731
            add("lambda_h1", peer, lambda: ours_at(1e-3), theirs_nominal, near_top(top, NOMINAL_RTOL))
            if peer == "pyhessian":  # the one peer whose rule is the value's change alone
                add("lambda_h1_value_rule", peer, lambda: ours_at(1e-3, "value"), theirs_nominal,
                    near_top(top, NOMINAL_RTOL))
            ours = AtAccuracy(ours_at, top)
            # the power iterations get 1000 iterations (their default: 100) so that they can get there
            theirs = AtAccuracy(lambda tol, side=side, peer=peer: over_starts(lambda seed: side.lambda_h1(
                x, y, tol, None if peer == "curvlinops" else 1000, seed), starts), top)
            add("lambda_h1_accuracy", peer, ours, theirs, both_within_accuracy(ours, theirs))
            add("trace_h", peer, lambda: project_hessian(model, x, y, 0, TRACE_SAMPLES)["curvature/trace_h"],
                lambda side=side: side.trace_h(x, y), relative(1e-4))
    return rows


def timed(work: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    value = work()
    return time.perf_counter() - started, value


@dataclass
class Result:
    probe: str
    peer: str
    project_ms: float
    peer_ms: float
    agrees: bool | None  # None: not comparable (the peer failed, or computes another quantity here)
    check: str
    pair_ratios: tuple[float, ...] = ()  # peer / project within each repeat (the two ran back to back)

    @property
    def ratio(self) -> float:
        return self.peer_ms / self.project_ms

    @property
    def spread(self) -> str:
        """The range of the per-repeat ratios: how far this machine's drift moves the ratio."""
        return f"{min(self.pair_ratios):.2f}-{max(self.pair_ratios):.2f}" if self.pair_ratios else "-"


def run(comparison: Comparison, repeats: int) -> Result:
    """Warm-up (and values) once each, then ``repeats`` alternating timings; medians."""
    _, ours = timed(comparison.project)
    try:
        _, theirs = timed(comparison.other)
    except Exception as error:  # the peer does not support a layer of this model: no row to compare
        return Result(comparison.probe, comparison.peer, math.nan, math.nan, None,
                      f"peer failed: {type(error).__name__}: {str(error).splitlines()[0][:80]}")
    agrees, check = comparison.agree(ours, theirs)
    project_s, peer_s = [], []
    for repeat in range(repeats if agrees else 0):
        pair = [(comparison.project, project_s), (comparison.other, peer_s)]
        for work, times in pair if repeat % 2 == 0 else reversed(pair):
            times.append(timed(work)[0])
    if not project_s:
        return Result(comparison.probe, comparison.peer, math.nan, math.nan, agrees, check)
    return Result(comparison.probe, comparison.peer, 1000 * statistics.median(project_s),
                  1000 * statistics.median(peer_s), agrees, check,
                  tuple(theirs / ours for ours, theirs in zip(project_s, peer_s)))


def run_model(name: str, probes: list[str], peers: list[str], n: int | None, repeats: int,
              starts: int = STARTS) -> Iterator[Result]:
    """The model's comparisons, one result at a time (printed as they come)."""
    case = CASES[name]
    torch.manual_seed(SEED)
    model = case.make().eval()
    n = n or case.n
    generator = torch.Generator().manual_seed(SEED)
    x = torch.randn(n, *case.input_shape, generator=generator)
    y = torch.randint(0, CLASSES, (n,), generator=generator)
    for comparison in comparisons(model, x, y, probes, peers, starts):
        yield run(comparison, repeats)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} torch thread(s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--probes", nargs="+", default=PROBES, choices=PROBES)
    parser.add_argument("--peers", nargs="+", default=list(PEERS), choices=list(PEERS))
    parser.add_argument("--n", type=int, default=None, help="probe-set size (default: per model, see CASES)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--starts", type=int, default=STARTS, help="random starts per lambda_H^1 call, each side")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"Machine: {machine()}\n")
    print("| model | N | probe | peer | project ms | peer ms | peer / project | per-repeat range | values |")
    print("|---|---:|---|---|---:|---:|---:|---:|---|")
    failures = 0
    for name in args.models:
        n = args.n or CASES[name].n
        for r in run_model(name, args.probes, args.peers, args.n, args.repeats, args.starts):
            failures += r.agrees is False
            verdict = {True: "agree", False: "DISAGREE", None: "not compared"}[r.agrees]
            times = f"{r.project_ms:.1f} | {r.peer_ms:.1f} | {r.ratio:.2f}x | {r.spread}" if r.agrees else "- | - | - | -"
            print(f"| {CASES[name].description} | {n} | {PROBE_TITLES[r.probe]} | {r.peer} | {times} "
                  f"| {verdict}: {r.check} |", flush=True)
    if failures:
        raise SystemExit(f"{failures} comparison(s) did not agree")


if __name__ == "__main__":
    main()
