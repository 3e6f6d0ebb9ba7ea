"""Probes against brute force on tiny float64 networks: explicit per-example loops, dense matrices."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from critical_periods.record import metric_names as names
from critical_periods.probes import (
    CovarianceOptions,
    DeltaLoss,
    FisherOptions,
    HessianOperator,
    HessianOptions,
    StiffnessOptions,
    collect_probe_gradients,
    compute_probes,
    covariance_spectrum,
    fisher_metrics,
    hutchinson_trace,
    lanczos,
    minibatch_covariance_metrics,
    minibatch_gradients,
    per_example_covariance_metrics,
    stiffness_from_gram,
    top_eigenvalues,
)
from critical_periods.probes.affine_batch_norm import batch_norm_as_affine
from critical_periods.probes.curvature import _ThickRestartBasis
from critical_periods.stopping import StopRequested, clear_stop, request_stop

N_EXAMPLES = 12


def assert_close(actual, expected, rtol: float = 1e-6, atol: float = 1e-12) -> None:
    torch.testing.assert_close(torch.as_tensor(actual, dtype=torch.float64),
                               torch.as_tensor(expected, dtype=torch.float64), rtol=rtol, atol=atol)


# --- tiny cases: (model, inputs) in float64; each covers different per-example gradient paths ----------


def _mlp() -> tuple[nn.Module, torch.Tensor]:
    return nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 3)), torch.randn(N_EXAMPLES, 10)


def _cnn2d() -> tuple[nn.Module, torch.Tensor]:
    # BatchNorm with nontrivial running statistics; in-place ReLU right after a hooked layer;
    # a convolution with different padding and dilation per spatial dimension.
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(inplace=True),
        nn.Conv2d(3, 4, 3, stride=2, padding=(0, 1), dilation=(1, 2)), nn.Flatten(), nn.Linear(16, 3),
    )
    model[1].running_mean.normal_()
    model[1].running_var.uniform_(0.5, 2.0)
    model[1].weight.data.normal_()
    return model, torch.randn(N_EXAMPLES, 1, 6, 6)


def _cnn1d() -> tuple[nn.Module, torch.Tensor]:
    # grouped, strided and dilated convolutions; BatchNorm1d on (N, C) features
    model = nn.Sequential(
        nn.Conv1d(2, 4, 3, padding=1, groups=2), nn.Tanh(),
        nn.Conv1d(4, 3, 3, stride=2, dilation=2, bias=False), nn.Flatten(),
        nn.BatchNorm1d(12), nn.Linear(12, 3),
    )
    model[4].running_mean.normal_()
    model[4].running_var.uniform_(0.5, 2.0)
    return model, torch.randn(N_EXAMPLES, 2, 12)


def _shared_and_unsupported() -> tuple[nn.Module, torch.Tensor]:
    # LayerNorm and padding="same" have no hook formula (torch.func path); one Linear is used twice.
    shared = nn.Linear(6, 6)
    model = nn.Sequential(
        nn.Conv1d(1, 2, 3, padding="same"), nn.Flatten(), nn.Linear(10, 6), nn.LayerNorm(6),
        shared, nn.Tanh(), shared, nn.Linear(6, 3),
    )
    return model, torch.randn(N_EXAMPLES, 1, 5)


class _Temperature(nn.Module):
    """A 0-dim learnable parameter on the root module (logits / temperature)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(7, 5), nn.Tanh(), nn.Linear(5, 3))
        self.temperature = nn.Parameter(torch.tensor(1.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) / self.temperature


def _temperature() -> tuple[nn.Module, torch.Tensor]:
    return _Temperature(), torch.randn(N_EXAMPLES, 7)


class _Tied(nn.Module):
    """Tied weights: ``b.weight = a.weight`` (b has no parameter of its own left), and one Parameter
    owned by the root and by two Linear modules, each of which also has a bias."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4, bias=False)
        self.b.weight = self.a.weight
        self.shared = nn.Parameter(torch.randn(3, 4))
        self.c, self.d = nn.Linear(4, 3), nn.Linear(4, 3)
        self.c.weight = self.d.weight = self.shared

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.a(x))
        h2 = torch.tanh(self.b(h))
        return self.c(h) + self.d(h2)


def _tied() -> tuple[nn.Module, torch.Tensor]:
    return _Tied(), torch.randn(N_EXAMPLES, 4)


class _Recurrent(nn.Module):
    """A recurrent layer over (N, T, features), classified from its last step (or its mean over steps).

    ``time_major``: the layer is built with ``batch_first=False`` and the model transposes, as users'
    models often do. A LayerNorm (no hook formula) on the input puts a non-recurrent layer on the
    same per-example path."""

    def __init__(self, kind: type[nn.RNNBase], time_major: bool = False, **options) -> None:
        super().__init__()
        self.time_major = time_major
        self.norm = nn.LayerNorm(3)
        self.rnn = kind(3, 4, batch_first=not time_major, **options)
        width = 4 * (2 if options.get("bidirectional") else 1)
        self.head = nn.Linear(width, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        out, _ = self.rnn(x.transpose(0, 1) if self.time_major else x)
        out = out.transpose(0, 1) if self.time_major else out
        return self.head(out[:, -1] + out.mean(1))


def _lstm() -> tuple[nn.Module, torch.Tensor]:
    return _Recurrent(nn.LSTM, num_layers=2), torch.randn(N_EXAMPLES, 5, 3)


def _gru() -> tuple[nn.Module, torch.Tensor]:
    return _Recurrent(nn.GRU, bidirectional=True), torch.randn(N_EXAMPLES, 5, 3)


def _rnn() -> tuple[nn.Module, torch.Tensor]:
    return _Recurrent(nn.RNN, time_major=True, nonlinearity="relu"), torch.randn(N_EXAMPLES, 5, 3)


CASES = {
    "mlp": _mlp, "cnn2d": _cnn2d, "cnn1d": _cnn1d, "shared_unsupported": _shared_and_unsupported,
    "temperature": _temperature, "tied": _tied, "lstm": _lstm, "gru": _gru, "rnn": _rnn,
}


@pytest.fixture(params=list(CASES))
def case(request) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model, inputs = CASES[request.param]()
    labels = torch.randint(0, 3, (N_EXAMPLES,))
    return model.double().train(), inputs.double(), labels


# --- brute force ----------------------------------------------------------------------------------------


def _layer_of(parameter_name: str) -> str:
    return parameter_name.rsplit(".", 1)[0] if "." in parameter_name else "root"


def explicit_gradients(model: nn.Module, inputs: torch.Tensor, loss_of_logits) -> dict[str, torch.Tensor]:
    """layer -> (N, P_layer): one autograd.grad per example of loss_of_logits(logits (1, C)).

    ``named_parameters()`` lists a tied parameter once, under its first owner: autograd sums its uses."""
    named = [(n, p) for n, p in model.named_parameters()]
    was_training = model.training
    model.eval()
    rows = []
    for x in inputs:
        grads = torch.autograd.grad(loss_of_logits(model(x.unsqueeze(0))), [p for _, p in named])
        rows.append(grads)
    model.train(was_training)
    per_layer: dict[str, list[torch.Tensor]] = {}
    for column, (name, _) in enumerate(named):
        per_layer.setdefault(_layer_of(name), []).append(torch.stack([row[column].flatten() for row in rows]))
    return {layer: torch.cat(cols, 1) for layer, cols in per_layer.items()}


def per_class_squared_norms(model, inputs) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """layer -> (N, C) ||grad log p(c|x_i)||^2, and p (N, C); a loop over examples and classes."""
    model.eval()
    with torch.no_grad():
        probabilities = model(inputs).softmax(1)
    norms: dict[str, list[torch.Tensor]] = {}
    for c in range(probabilities.shape[1]):
        grads = explicit_gradients(model, inputs, lambda z, c=c: z.log_softmax(1)[0, c])
        for layer, g in grads.items():
            norms.setdefault(layer, []).append(g.square().sum(1))
    return {layer: torch.stack(cols, 1) for layer, cols in norms.items()}, probabilities


def true_label_gradients(model, inputs, labels) -> torch.Tensor:
    """(N, P) gradients of each example's cross-entropy."""
    it = iter(labels)
    grads = explicit_gradients(model, inputs, lambda z: F.cross_entropy(z, next(it).view(1)))
    return torch.cat(list(grads.values()), 1)


def batch_gradients(model, inputs, labels, batch_size: int) -> torch.Tensor:
    """(L, P) gradients of the mean cross-entropy of consecutive mini-batches, one autograd.grad each."""
    was_training = model.training
    model.eval()
    rows = []
    for start in range(0, len(inputs), batch_size):
        batch = slice(start, start + batch_size)
        grads = torch.autograd.grad(F.cross_entropy(model(inputs[batch]), labels[batch]), list(model.parameters()))
        rows.append(torch.cat([g.flatten() for g in grads]))
    model.train(was_training)
    return torch.stack(rows)


def dense_covariance_spectrum(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """K = (1/n) sum_l (g_l - g)(g_l - g)^T as a dense P x P matrix, and its eigenvalues, descending."""
    centred = rows - rows.mean(0)
    dense_k = centred.T @ centred / rows.shape[0]
    return dense_k, torch.linalg.eigvalsh(dense_k).flip(0)


def dense_hessian(model, inputs, labels) -> torch.Tensor:
    names = [n for n, _ in model.named_parameters()]
    params = [p.detach() for p in model.parameters()]
    flat = torch.cat([p.flatten() for p in params])

    def loss(w: torch.Tensor) -> torch.Tensor:
        pieces = w.split([p.numel() for p in params])
        pieces = {name: piece.view_as(p) for name, piece, p in zip(names, pieces, params)}
        return F.cross_entropy(functional_call(model, pieces, (inputs,)), labels)

    model.eval()
    return torch.func.hessian(loss)(flat)


# --- estimators on a 10 x 10 matrix first ---------------------------------------------------------------


@pytest.fixture
def symmetric() -> torch.Tensor:
    a = torch.randn(10, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return (a + a.T) / 2


@pytest.mark.parametrize("k", [1, 3])
def test_lanczos_top_eigenvalues_match_eigh(symmetric, k):
    expected = torch.linalg.eigvalsh(symmetric).flip(0)[:k]
    assert_close(top_eigenvalues(symmetric, k=k, tolerance=0.0, generator=torch.Generator().manual_seed(0)),
                 expected, rtol=1e-10)


class CountingOperator:
    """A dense matrix behind ``@``, counting the products."""

    def __init__(self, matrix: torch.Tensor) -> None:
        self.matrix, self.shape, self.dtype, self.device, self.products = matrix, matrix.shape, matrix.dtype, matrix.device, 0

    def __matmul__(self, v: torch.Tensor) -> torch.Tensor:
        self.products += 1
        return self.matrix @ v


@pytest.mark.parametrize("k,basis_size", [(1, 4), (3, 8)])
def test_restarted_lanczos_with_a_small_basis_matches_eigh(k, basis_size):
    # 300 x 300, eigenvalues clustered near the top: many more products than stored vectors
    generator = torch.Generator().manual_seed(2)
    q, _ = torch.linalg.qr(torch.randn(300, 300, generator=generator, dtype=torch.float64))
    eigenvalues = torch.cat([torch.tensor([5.0, 4.8, 4.7, 4.65]), torch.rand(296, generator=generator, dtype=torch.float64) * 4 - 2])
    operator = CountingOperator(q @ torch.diag(eigenvalues) @ q.T)
    values = top_eigenvalues(operator, k=k, tolerance=1e-10, max_iterations=3000, basis_size=basis_size,
                             generator=torch.Generator().manual_seed(0))
    assert_close(values, eigenvalues.sort(descending=True).values[:k], rtol=1e-9)
    assert operator.products > 3 * basis_size  # it restarted, several times


@pytest.mark.parametrize("guarded", [True, False])
def test_lanczos_turns_full_reorthogonalisation_on_before_a_spurious_copy_appears(guarded, monkeypatch):
    # float32, a well separated top: lambda_1's Ritz vector converges fast, and with the local
    # orthogonalisation alone V loses orthogonality along it and lambda_1 comes back as a second
    # "eigenvalue". The guard (a Ritz residual below sqrt(eps) max |theta|) switches the full pass on
    # in time; without it (the negative control) the copy appears.
    generator = torch.Generator().manual_seed(4)
    q, _ = torch.linalg.qr(torch.randn(400, 400, generator=generator, dtype=torch.float64))
    eigenvalues = torch.cat([torch.tensor([10.0, 6.0, 5.5]), torch.rand(397, generator=generator, dtype=torch.float64) * 2 - 1])
    matrix = (q @ torch.diag(eigenvalues) @ q.T).float()
    if not guarded:
        monkeypatch.setattr(_ThickRestartBasis, "_orthogonality_at_risk", lambda self, w: False)
    result = lanczos(matrix, k=3, tolerance=1e-5, max_iterations=300, basis_size=60,
                     generator=torch.Generator().manual_seed(0))
    vectors = result.vectors.double()
    off_orthogonal = float((vectors @ vectors.T - torch.eye(3, dtype=torch.float64)).abs().max())
    if guarded:
        assert_close(result.values, torch.tensor([10.0, 6.0, 5.5], dtype=torch.float64), rtol=1e-5, atol=0)
        assert off_orthogonal < 1e-4
    else:
        assert abs(float(result.values[1]) - 10.0) < 1e-4  # lambda_1 twice
        assert off_orthogonal > 0.5


def test_lanczos_at_a_loose_tolerance_reads_only_the_newest_two_basis_vectors(symmetric):
    # What the local orthogonalisation saves: while no Ritz residual is below sqrt(eps) max |theta|
    # (three steps into a 10 x 10 matrix), no step reads the older basis vectors, so T stays exactly
    # tridiagonal (a full pass would leave rounding-sized entries off it).
    basis = _ThickRestartBasis(symmetric, torch.randn(10, generator=torch.Generator().manual_seed(0),
                                                       dtype=torch.float64), size=8, keep=4)
    for _ in range(3):
        w, _ = basis.expand()
        basis.append(w, float(w.norm()), *basis.ritz())
    assert not basis.full_reorthogonalisation
    assert float(basis.projected[:4, :4].triu(2).abs().max()) == 0.0  # T tridiagonal: no full pass


@pytest.mark.parametrize("k", [1, 2])
def test_lanczos_stopping_on_the_value_is_close_below_the_top_in_fewer_products(k):
    # the top of the spectrum clustered (as a network's Hessian at initialisation), where the residual
    # converges slowly; a Ritz value is never above its eigenvalue (interlacing), and the value rule
    # (power iteration's) stops while it still creeps up: within a percent here, not within tolerance
    generator = torch.Generator().manual_seed(3)
    q, _ = torch.linalg.qr(torch.randn(300, 300, generator=generator, dtype=torch.float64))
    eigenvalues = torch.cat([torch.tensor([5.0, 4.9, 4.85]), torch.rand(297, generator=generator, dtype=torch.float64) * 4 - 2])
    expected = eigenvalues.sort(descending=True).values[:k]
    counted = {}
    for stopping in ("residual", "value"):
        operator = CountingOperator(q @ torch.diag(eigenvalues) @ q.T)
        result = lanczos(operator, k=k, tolerance=1e-3, max_iterations=300, stopping=stopping,
                         generator=torch.Generator().manual_seed(0))
        assert_close(result.values, expected, rtol=1e-3 if stopping == "residual" else 1e-2)
        assert bool((result.values <= expected + 1e-12).all())
        counted[stopping] = operator.products
    assert counted["value"] < counted["residual"]


def test_an_unknown_lanczos_stopping_rule_is_refused_naming_the_key():
    with pytest.raises(ValueError, match=r"probes\.hessian\.stopping='power' .*residual or value"):
        HessianOptions(stopping="power")


def test_hutchinson_converges_to_the_trace(symmetric):
    samples = 4000
    estimate = hutchinson_trace(symmetric, samples, torch.Generator().manual_seed(0))
    std = math.sqrt(2 * (symmetric.square().sum() - symmetric.diagonal().square().sum()) / samples)
    assert abs(estimate - symmetric.trace().item()) < 4 * std


# --- Fisher -------------------------------------------------------------------------------------------


def test_exact_fisher_matches_loop_over_examples_and_classes(case):
    model, inputs, _ = case
    gradients = collect_probe_gradients(model, inputs, fisher=FisherOptions(exact=True))
    norms, probabilities = per_class_squared_norms(model, inputs)
    expected = {layer: (p_norms * probabilities).sum(1) for layer, p_norms in norms.items()}
    assert gradients.fisher_squared_norms.keys() == expected.keys()
    for layer in expected:
        assert_close(gradients.fisher_squared_norms[layer], expected[layer])
    metrics = fisher_metrics(gradients.fisher_squared_norms)
    total = sum(e.mean() for e in expected.values())
    assert_close(metrics["fisher/trace"], total)
    assert_close(sum(metrics[f"fisher/trace/{layer}"] for layer in expected), metrics["fisher/trace"])
    assert_close(sum(metrics[f"fisher/share/{layer}"] for layer in expected), 1.0)


def test_sampled_fisher_converges_to_exact_expectation():
    torch.manual_seed(0)
    model, inputs = _mlp()
    model.double()
    inputs = inputs.double() * 3  # confident predictions: sampled labels differ a lot from uniform
    samples = 300
    gradients = collect_probe_gradients(model, inputs, fisher=FisherOptions(samples=samples),
                                        generator=torch.Generator().manual_seed(0))
    norms, probabilities = per_class_squared_norms(model, inputs)
    per_class = sum(norms.values())  # (N, C)
    exact = (per_class * probabilities).sum(1)
    variance = (per_class.square() * probabilities).sum(1) - exact.square()
    std = math.sqrt(variance.sum() / (N_EXAMPLES**2 * samples))  # of the mean over examples and draws
    estimate = sum(gradients.fisher_squared_norms.values()).mean()
    assert abs(estimate - exact.mean()) < 4 * std
    assert std < 0.05 * exact.mean()  # the test has power: the tolerance is tight


# --- per-example gradients: Gram matrix, both paths, chunking -----------------------------------------


def test_gram_matches_explicit_per_example_gradients(case):
    model, inputs, labels = case
    explicit = true_label_gradients(model, inputs, labels)
    gradients = collect_probe_gradients(model, inputs, labels, gram=True)
    assert_close(gradients.gram, explicit @ explicit.T)
    assert gradients.num_classes == 3


def test_functional_path_matches_hooked_path(case):
    model, inputs, labels = case
    options = dict(fisher=FisherOptions(exact=True), gram=True, chunk_size=5)
    hooked = collect_probe_gradients(model, inputs, labels, **options)
    functional = collect_probe_gradients(model, inputs, labels, method="functional", **options)
    assert_close(hooked.gram, functional.gram)
    for layer, norms in functional.fisher_squared_norms.items():
        assert_close(hooked.fisher_squared_norms[layer], norms)


class _ScaledLinear(nn.Linear):
    """A stock Linear's parameters, another forward: y = x (2W)^T + b."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, 2 * self.weight, self.bias)


class _ShiftedBatchNorm(nn.BatchNorm1d):
    """A stock BatchNorm's parameters, another forward: the stock one plus the bias once more."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + self.bias


@pytest.mark.parametrize("layer", ["linear", "batch_norm"])
def test_a_layer_subclass_with_its_own_forward_gets_its_own_per_example_gradients(layer):
    # The hook formulas hold for the stock forward only; a subclass overriding it must not get them
    # (with them, the scaled Linear's weight gradients came out half their size).
    torch.manual_seed(0)
    first = _ScaledLinear(5, 4) if layer == "linear" else nn.Linear(5, 4)
    norm = _ShiftedBatchNorm(4) if layer == "batch_norm" else nn.BatchNorm1d(4)
    model = nn.Sequential(first, nn.ReLU(), norm, nn.Linear(4, 3)).double()
    model.train()
    model(torch.randn(32, 5, dtype=torch.float64))  # running statistics that are not the defaults
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5), norm.bias.uniform_(-0.5, 0.5)
    model.eval()
    inputs = torch.randn(N_EXAMPLES, 5, dtype=torch.float64)
    labels = torch.randint(0, 3, (N_EXAMPLES,))
    explicit = true_label_gradients(model, inputs, labels)
    assert_close(collect_probe_gradients(model, inputs, labels, gram=True).gram, explicit @ explicit.T)


@pytest.mark.parametrize("name", ["cnn2d", "cnn1d"])
def test_layer_inputs_prepared_again_past_the_budget_give_the_same_statistics(name, monkeypatch):
    import critical_periods.probes.per_example as per_example

    torch.manual_seed(0)
    model, inputs = CASES[name]()
    model, inputs = model.double(), inputs.double()
    labels = torch.randint(0, 3, (N_EXAMPLES,))
    options = dict(fisher=FisherOptions(exact=True), gram=True)
    kept = collect_probe_gradients(model, inputs, labels, **options)
    monkeypatch.setattr(per_example, "PREPARED_INPUT_BUDGET", 0)  # nothing kept across directions
    prepared_each_time = collect_probe_gradients(model, inputs, labels, **options)
    assert_close(prepared_each_time.gram, kept.gram, rtol=1e-12)
    for layer, norms in kept.fisher_squared_norms.items():
        assert_close(prepared_each_time.fisher_squared_norms[layer], norms, rtol=1e-12)


@pytest.mark.parametrize("chunk_size", [1, 5])
def test_chunked_statistics_equal_whole_probe_set(case, chunk_size):
    model, inputs, labels = case

    def collect(chunk: int | None):
        return collect_probe_gradients(model, inputs, labels, fisher=FisherOptions(samples=3), gram=True,
                                       chunk_size=chunk, generator=torch.Generator().manual_seed(7))

    whole, chunked = collect(None), collect(chunk_size)
    assert_close(chunked.gram, whole.gram, rtol=1e-12)
    for layer, norms in whole.fisher_squared_norms.items():
        assert_close(chunked.fisher_squared_norms[layer], norms, rtol=1e-12)


@pytest.mark.parametrize("name", ["cnn2d", "cnn1d"])
def test_chunked_gram_never_forms_more_than_a_chunk_of_dense_gradients(name, monkeypatch):
    import critical_periods.probes.per_example as per_example

    torch.manual_seed(0)
    model, inputs = CASES[name]()
    model, inputs = model.double(), inputs.double()
    labels = torch.randint(0, 3, (N_EXAMPLES,))
    rows: list[int] = []  # rows of every dense per-example gradient matrix formed or multiplied

    def recording(function):
        def wrapper(*args):
            result = function(*args)
            first = result[0] if isinstance(result, list) else result  # the dense forms return parts
            rows.append(len(args[0]) if function.__name__ == "gram" else first.shape[0])
            return result
        return wrapper

    for form in ("_conv_dense", "_batchnorm_dense", "_linear_dense", "_densify"):
        monkeypatch.setattr(per_example, form, recording(getattr(per_example, form)))
    monkeypatch.setattr(per_example.DenseGradients, "gram", recording(per_example.DenseGradients.gram))
    chunked = collect_probe_gradients(model, inputs, labels, gram=True, chunk_size=5)
    assert rows and max(rows) <= 5  # per-example gradients of at most one chunk at a time
    explicit = true_label_gradients(model, inputs, labels)
    assert_close(chunked.gram, explicit @ explicit.T)


@pytest.mark.parametrize("probe", ["fisher", "gram", "hessian", "minibatch"])
def test_sequence_logits_are_refused_with_the_expected_shape(probe):
    # A per-position classifier: logits (N, C, T). Cross-entropy would silently become a loss per
    # position (or fail deep inside torch); the probes name the shape they need instead.
    model = nn.Conv1d(2, 3, 1).double()
    inputs, labels = torch.randn(N_EXAMPLES, 2, 5, dtype=torch.float64), torch.randint(0, 3, (N_EXAMPLES,))
    run = {
        "fisher": lambda: collect_probe_gradients(model, inputs, fisher=FisherOptions(exact=True)),
        "gram": lambda: collect_probe_gradients(model, inputs, labels, gram=True),
        "hessian": lambda: compute_probes(model, inputs, labels, hessian=HessianOptions()),
        "minibatch": lambda: minibatch_gradients(model, inputs, labels, batch_size=4),
    }[probe]
    with pytest.raises(ValueError, match=r"logits of shape \(N, C\) = \(\d+, classes\).*returned \(\d+, 3, 5\)"):
        run()


def test_batchnorm_without_running_statistics_is_refused():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3, track_running_stats=False)).double()
    with pytest.raises(ValueError, match="per-example"):
        collect_probe_gradients(model, torch.randn(6, 4, dtype=torch.float64), fisher=FisherOptions(exact=True))


# --- gradient covariance K ------------------------------------------------------------------------------

BATCH, BATCHES = 3, 4  # K from L = 4 mini-batches of B = 3 of the 12 examples


def test_minibatch_covariance_matches_dense_covariance_of_explicit_batch_gradients(case):
    model, inputs, labels = case
    explicit = batch_gradients(model, inputs, labels, BATCH)  # (L, P)
    assert_close(minibatch_gradients(model, inputs, labels, BATCH), explicit)
    dense_k, spectrum = dense_covariance_spectrum(explicit)
    assert spectrum[BATCHES - 2] > 1e-6 * spectrum[0]  # L - 1 nonzero eigenvalues...
    assert_close(spectrum[BATCHES - 1 :], torch.zeros(len(spectrum) - BATCHES + 1), atol=1e-12)  # ...then 0

    metrics = minibatch_covariance_metrics(model, inputs, labels, CovarianceOptions(BATCH, BATCHES))
    lambda_star = spectrum[BATCHES - 2]  # the smallest nonzero eigenvalue of the dense K
    assert_close(metrics[names.LAMBDA_K1], spectrum[0])
    assert_close(metrics[names.TRACE_K], dense_k.trace())
    assert_close(metrics[names.COND_K], lambda_star / spectrum[0])
    assert_close(metrics[names.TRACE_K_RATIO], dense_k.trace() / spectrum[0])
    assert (BATCHES - 1) * metrics[names.COND_K] <= metrics[names.TRACE_K_RATIO] <= BATCHES - 1
    mean = explicit.mean(0)  # the gradient of the mean loss on the L B examples
    assert_close(metrics[names.GRAD_NORM], mean.norm())
    assert_close(metrics[names.GRAD_MEAN], mean.mean())
    assert_close(metrics[names.GRAD_STD], mean.std(correction=0))


@pytest.mark.parametrize("chunk_size", [1, 2, 5])
def test_minibatch_gradients_do_not_depend_on_chunking(case, chunk_size):
    model, inputs, labels = case
    assert_close(minibatch_gradients(model, inputs, labels, BATCH, chunk_size),
                 minibatch_gradients(model, inputs, labels, BATCH), rtol=1e-12)


def test_cond_k_is_a_property_of_the_model_not_a_threshold():
    conditions = []
    for name in ("mlp", "cnn1d", "tied"):
        torch.manual_seed(0)
        model, inputs = CASES[name]()
        model, inputs = model.double(), inputs.double()
        labels = torch.randint(0, 3, (N_EXAMPLES,))
        options = CovarianceOptions(batch_size=2, batches=6)
        conditions.append(minibatch_covariance_metrics(model, inputs, labels, options)[names.COND_K])
    assert all(0 < c < 1 for c in conditions)
    assert min(conditions) < 0.5 * max(conditions)  # it varies with the model...
    assert all(abs(c - 1e-3) > 5e-4 for c in conditions)  # ...and sits at no former threshold


def test_per_example_covariance_matches_dense_covariance(case):
    model, inputs, labels = case
    explicit = true_label_gradients(model, inputs, labels)  # (N, P)
    dense_k, spectrum = dense_covariance_spectrum(explicit)
    gram = explicit @ explicit.T
    assert_close(covariance_spectrum(gram)[: N_EXAMPLES - 1], spectrum[: N_EXAMPLES - 1], atol=1e-10)

    metrics = per_example_covariance_metrics(gram)
    assert_close(metrics[names.PER_EXAMPLE_LAMBDA_K1], spectrum[0])
    assert_close(metrics[names.PER_EXAMPLE_TRACE_K], dense_k.trace())
    if explicit.shape[1] >= N_EXAMPLES - 1:  # rank N - 1 needs as many parameters
        assert_close(metrics[names.PER_EXAMPLE_COND_K], spectrum[N_EXAMPLES - 2] / spectrum[0])


def test_covariance_options_refuse_bad_values_naming_the_key():
    with pytest.raises(ValueError, match=r"probes\.covariance\.batches=1 is not allowed"):
        CovarianceOptions(batches=1)
    with pytest.raises(ValueError, match=r"probes\.covariance\.batch_size=0 is not allowed"):
        CovarianceOptions(batch_size=0)


# --- stiffness ------------------------------------------------------------------------------------------


def test_stiffness_matches_explicit_pair_loops(case):
    model, inputs, labels = case
    g = true_label_gradients(model, inputs, labels)
    pairs = {"same": ([], []), "diff": ([], [])}
    cells: dict[tuple[int, int], list[float]] = {}
    for i in range(N_EXAMPLES):
        for j in range(N_EXAMPLES):
            if i == j:
                continue
            cos = float(g[i] @ g[j] / (g[i].norm() * g[j].norm()))
            kind = "same" if labels[i] == labels[j] else "diff"
            pairs[kind][0].append(cos)
            pairs[kind][1].append(math.copysign(1.0, float(g[i] @ g[j])))
            cells.setdefault((int(labels[i]), int(labels[j])), []).append(cos)

    results = compute_probes(model, inputs, labels, stiffness=StiffnessOptions(), chunk_size=5)
    metrics = results.metrics
    assert_close(metrics[names.STIFFNESS_COS_SAME], sum(pairs["same"][0]) / len(pairs["same"][0]))
    assert_close(metrics[names.STIFFNESS_COS_DIFF], sum(pairs["diff"][0]) / len(pairs["diff"][0]))
    assert_close(metrics[names.STIFFNESS_SIGN_SAME], sum(pairs["same"][1]) / len(pairs["same"][1]))
    assert_close(metrics[names.STIFFNESS_SIGN_DIFF], sum(pairs["diff"][1]) / len(pairs["diff"][1]))
    expected = torch.full((3, 3), float("nan"), dtype=torch.float64)
    for (c, d), values in cells.items():
        expected[c, d] = sum(values) / len(values)
    torch.testing.assert_close(results.stiffness_matrix, expected, equal_nan=True)


def test_stiffness_of_a_zero_gradient_is_zero_and_bad_options_are_refused():
    g = torch.tensor([[1.0, 2.0], [0.0, 0.0], [-1.0, -2.0]], dtype=torch.float64)  # example 1: zero gradient
    averages, matrix = stiffness_from_gram(g @ g.T, torch.tensor([0, 0, 1]), num_classes=2)
    assert averages[names.STIFFNESS_COS_SAME] == 0.0 and averages[names.STIFFNESS_SIGN_SAME] == 0.0
    assert averages[names.STIFFNESS_COS_DIFF] == pytest.approx(-0.5)  # pairs (0, 2): -1 twice, (1, 2): 0 twice
    assert matrix[0, 1] == pytest.approx(-0.5) and math.isnan(matrix[1, 1])  # class 1 has one example
    with pytest.raises(ValueError, match=r"probes\.stiffness\.matrix_every_n_epochs=-1 is not allowed"):
        StiffnessOptions(matrix_every_n_epochs=-1)


# --- Hessian ------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")  # inside torch.func's forward AD
@pytest.mark.parametrize("name", ["mlp", "cnn2d", "cnn1d"])  # BatchNorm2d, and BatchNorm1d on (N, C)
def test_hessian_probes_match_dense_hessian(name):
    torch.manual_seed(0)
    model, inputs = CASES[name]()
    model, inputs = model.double(), inputs.double()
    labels = torch.randint(0, 3, (N_EXAMPLES,))
    dense = dense_hessian(model, inputs, labels)
    for chunk_size in (5, None):  # chunked, and one chunk with its gradient graph kept between products
        operator = HessianOperator(model, inputs, labels, chunk_size)
        for _ in range(2):
            v = torch.randn(dense.shape[0], dtype=torch.float64)
            with torch.profiler.profile() as profile:
                product = operator @ v
            assert_close(product, dense @ v)
            # eval-mode BatchNorm is differentiated as the affine map it is, not by its kernel's backward
            assert not any("batch_norm" in event.name for event in profile.events())

    expected = torch.linalg.eigvalsh(dense).flip(0)[:2]
    options = HessianOptions(top_k=2, tolerance=0.0, trace_samples=0)
    metrics = compute_probes(model, inputs, labels, hessian=options).metrics
    assert_close([metrics["curvature/lambda_h1"], metrics["curvature/lambda_h2"]], expected)

    # Same seed, same Rademacher vectors: the estimator on the operator equals it on the dense matrix.
    samples = 50
    on_operator = hutchinson_trace(operator, samples, torch.Generator().manual_seed(3))
    assert_close(on_operator, hutchinson_trace(dense, samples, torch.Generator().manual_seed(3)))
    std = math.sqrt(2 * (dense.square().sum() - dense.diagonal().square().sum()) / samples)
    assert abs(on_operator - dense.trace().item()) < 4 * std


def test_eval_batch_norm_enters_the_hessian_graph_as_an_affine_map():
    torch.manual_seed(0)
    norms = [nn.BatchNorm1d(3), nn.BatchNorm2d(3, affine=False), nn.BatchNorm1d(3), nn.BatchNorm1d(3, track_running_stats=False)]
    for norm in norms[:3]:
        norm.running_mean.normal_()
        norm.running_var.uniform_(0.5, 2.0)
    norms[0].weight.data.normal_()
    norms[0].bias.data.normal_()
    norms[2].train()  # training mode: batch statistics, its own forward
    for norm, x in zip(norms, [torch.randn(5, 3), torch.randn(5, 3, 4, 4), torch.randn(5, 3), torch.randn(5, 3)]):
        x = x.double().requires_grad_()
        norm = norm.double()
        if norm is not norms[2]:
            norm.eval()
        native = norm(x)
        with batch_norm_as_affine(norm):
            affine = norm(x)
        assert_close(affine, native, rtol=1e-12, atol=1e-12)
        rewritten = norm.track_running_stats and not norm.training
        assert ("NativeBatchNorm" not in type(affine.grad_fn).__name__) == rewritten
        assert "forward" not in vars(norm)  # restored
        assert norm(x).grad_fn.name() == native.grad_fn.name()


def test_a_batch_norm_subclass_with_its_own_forward_keeps_it_in_the_hessian_graph():
    class Doubled(nn.BatchNorm1d):
        def forward(self, x):
            return 2 * super().forward(x)

    norm = Doubled(3).double().eval()
    norm.running_mean.normal_()
    x = torch.randn(5, 3, dtype=torch.float64)
    with batch_norm_as_affine(norm):
        assert_close(norm(x), 2 * F.batch_norm(x, norm.running_mean, norm.running_var, norm.weight, norm.bias,
                                               eps=norm.eps))
    assert "forward" not in vars(norm)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
@pytest.mark.parametrize("k", [1, 2])
def test_warm_started_lanczos_matches_dense_eigenvalues_in_fewer_products(k):
    # Two consecutive probes: the second, after one small SGD step, starts from the first's Ritz vectors.
    torch.manual_seed(0)
    model, inputs = CASES["cnn1d"]()
    model, inputs = model.double(), inputs.double()
    labels = torch.randint(0, 3, (N_EXAMPLES,))
    options = HessianOptions(top_k=k, tolerance=1e-6, max_iterations=200, trace_samples=0, warm_start=True)
    first = compute_probes(model, inputs, labels, hessian=options)
    assert first.hessian_eigenvectors.shape == (k, sum(p.numel() for p in model.parameters()))

    model.eval()
    loss = F.cross_entropy(model(inputs), labels)
    with torch.no_grad():
        for p, g in zip(model.parameters(), torch.autograd.grad(loss, list(model.parameters()))):
            p -= 0.05 * g
    expected = torch.linalg.eigvalsh(dense_hessian(model, inputs, labels)).flip(0)[:k]

    operator = HessianOperator(model, inputs, labels)
    cold = lanczos(operator, k, 1e-6, 200, torch.Generator().manual_seed(0))
    warm = lanczos(operator, k, 1e-6, 200, start=first.hessian_eigenvectors)
    assert_close(cold.values, expected, rtol=1e-6)
    assert_close(warm.values, expected, rtol=1e-6)
    assert warm.iterations < cold.iterations  # the saving the warm start is for
    # the Ritz vectors are eigenvectors: ||H x - theta x|| small
    for value, vector in zip(warm.values, warm.vectors):
        assert (operator @ vector - value * vector).norm() <= 1e-5 * abs(value)

    # through compute_probes: the start is used only with warm_start, and gives the same values
    second = compute_probes(model, inputs, labels, hessian=options, hessian_start=first.hessian_eigenvectors)
    assert_close([second.metrics[f"curvature/lambda_h{i + 1}"] for i in range(k)], expected, rtol=1e-6)


# --- Delta L ------------------------------------------------------------------------------------------


def test_delta_loss_on_hand_computed_sequence():
    meter = DeltaLoss()
    meter.update(torch.tensor([2.0, 1.5, 1.75, 1.0]))  # differences -0.5, +0.25, -0.75
    assert meter.compute() == pytest.approx(
        {"break_even/delta_loss_abs": 0.5, "break_even/delta_loss": -1.0 / 3})
    meter.reset()
    meter.update(torch.tensor(1.5))  # the difference to the last loss before the reset still counts
    assert meter.compute() == pytest.approx({"break_even/delta_loss_abs": 0.5, "break_even/delta_loss": 0.5})


def test_delta_loss_chunked_updates_equal_one_pass():
    losses = torch.rand(37, generator=torch.Generator().manual_seed(0))
    whole, chunked = DeltaLoss(), DeltaLoss()
    whole.update(losses)
    for piece in losses.split([1, 10, 0, 7, 19]):
        chunked.update(piece)
    assert chunked.compute() == pytest.approx(whole.compute(), rel=1e-12)


# --- all probes together ---------------------------------------------------------------------------------


def test_compute_probes_keys_and_no_side_effects():
    torch.manual_seed(0)
    model, inputs = _cnn2d()
    model = model.double().train()
    model[1].eval()  # mixed modes must come back as they were
    inputs, labels = inputs.double(), torch.randint(0, 3, (N_EXAMPLES,))
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    model[0].bias.grad = None
    params = [p.detach().clone() for p in model.parameters()]
    buffers = [b.clone() for b in model.buffers()]
    rng = torch.get_rng_state()

    results = compute_probes(
        model, inputs, labels, fisher=FisherOptions(samples=2),
        covariance=CovarianceOptions(batch_size=2, batches=3, per_example=True),
        covariance_batches=(inputs[:6], labels[:6]), hessian=HessianOptions(top_k=2, trace_samples=3),
        stiffness=StiffnessOptions(), chunk_size=5, generator=torch.Generator().manual_seed(0),
    )
    metrics = results.metrics

    layers = ["0", "1", "3", "5"]
    assert set(metrics) == {
        "fisher/trace", *(f"fisher/trace/{l}" for l in layers), *(f"fisher/share/{l}" for l in layers),
        "curvature/lambda_h1", "curvature/lambda_h2", "curvature/trace_h",
        "break_even/lambda_k1", "break_even/trace_k", "break_even/cond_k", "break_even/trace_k_ratio",
        "break_even/per_example/lambda_k1", "break_even/per_example/trace_k", "break_even/per_example/cond_k",
        "stiffness/cos_same_class", "stiffness/cos_diff_class", "stiffness/sign_same_class",
        "stiffness/sign_diff_class", "grad/norm", "grad/mean", "grad/std",
    }
    assert results.stiffness_matrix.shape == (3, 3)
    assert all(type(v) is float and math.isfinite(v) for v in metrics.values())
    assert [m.training for m in model] == [True, False, True, True, True, True]
    assert model[0].bias.grad is None
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in model.parameters() if p.grad is not None)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), params))
    assert all(torch.equal(b, c) for b, c in zip(model.buffers(), buffers))
    assert torch.equal(torch.get_rng_state(), rng)


@pytest.mark.parametrize("probe", ["fisher", "covariance", "hessian"])
def test_a_pending_stop_interrupts_a_probe(probe):
    torch.manual_seed(0)
    model, inputs = _mlp()
    labels = torch.randint(0, 3, (N_EXAMPLES,))
    options = {
        "fisher": dict(fisher=FisherOptions(exact=True)),
        "covariance": dict(covariance=CovarianceOptions(batch_size=3, batches=4), covariance_batches=(inputs, labels)),
        "hessian": dict(hessian=HessianOptions(top_k=1, trace_samples=2)),
    }[probe]
    request_stop()
    try:
        with pytest.raises(StopRequested):
            compute_probes(model, inputs, labels, chunk_size=4, **options)
    finally:
        clear_stop()
    compute_probes(model, inputs, labels, chunk_size=4, **options)  # and runs once the flag is cleared
