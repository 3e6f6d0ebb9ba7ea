"""Models: shapes, gradient flow, torch.func compatibility, parameter counts, validation."""

from __future__ import annotations

from collections.abc import Callable

import hydra.utils
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from critical_periods.models.cnn import AllCNN, SimpleCNN
from critical_periods.models.conv1d import Conv1DNet
from critical_periods.models.deep_linear import DeepLinear
from critical_periods.models.mlp import MLP
from critical_periods.models.resnet import ResNet18

NUM_CLASSES = 5
SIGNAL = (1, 40)
IMAGES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]
ALL_SHAPES = [SIGNAL, *IMAGES]

# name -> (factory with tiny hyper-parameters, input shapes it supports)
Factory = Callable[[tuple[int, ...], int], nn.Module]
MODELS: dict[str, tuple[Factory, list[tuple[int, ...]]]] = {
    "mlp": (lambda s, c: MLP(s, c, widths=(16, 8)), ALL_SHAPES),
    "mlp_bn_dropout": (lambda s, c: MLP(s, c, widths=(16, 8), activation="tanh", batch_norm=True, dropout=0.1), ALL_SHAPES),
    "conv1d": (lambda s, c: Conv1DNet(s, c, channels=4, depth=3), [SIGNAL]),
    "conv1d_bn": (lambda s, c: Conv1DNet(s, c, channels=4, depth=2, kernel_size=4, batch_norm=True), [SIGNAL]),
    "simplecnn": (lambda s, c: SimpleCNN(s, c, channels=(4, 8), hidden=16), IMAGES),
    "simplecnn_bn": (lambda s, c: SimpleCNN(s, c, channels=(4, 8), hidden=16, batch_norm=True), IMAGES),
    "allcnn": (lambda s, c: AllCNN(s, c, width=4, dropout=0.2), IMAGES),
    "allcnn_nobn": (lambda s, c: AllCNN(s, c, width=4, batch_norm=False), IMAGES),
    "resnet18": (lambda s, c: ResNet18(s, c, width=4), IMAGES),
    "deep_linear": (lambda s, c: DeepLinear(s, c, width=8, depth=3), ALL_SHAPES),
}
SUPPORTED = [pytest.param(m, s, id=f"{m}-{'x'.join(map(str, s))}") for m, (_, ss) in MODELS.items() for s in ss]
REJECTED = [
    pytest.param(m, s, id=f"{m}-{'x'.join(map(str, s))}")
    for m, (_, ss) in MODELS.items()
    for s in ALL_SHAPES
    if s not in ss
]
# Smallest supported shape per model, for the costlier torch.func checks.
SMALLEST = [pytest.param(m, ss[0], id=m) for m, (_, ss) in MODELS.items()]


def build(name: str, shape: tuple[int, ...]) -> nn.Module:
    torch.manual_seed(0)
    return MODELS[name][0](shape, NUM_CLASSES)


def batch(shape: tuple[int, ...], size: int = 4, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(size, *shape, generator=g), torch.randint(0, NUM_CLASSES, (size,), generator=g)


@pytest.mark.parametrize("name, shape", SUPPORTED)
def test_forward_shape_and_finite(name: str, shape: tuple[int, ...]) -> None:
    model = build(name, shape)
    x, _ = batch(shape)
    for mode in (model.train, model.eval):
        mode()
        out = model(x)
        assert out.shape == (4, NUM_CLASSES)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("name, shape", REJECTED)
def test_rejects_unsupported_input_shape(name: str, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="input_shape"):
        build(name, shape)


@pytest.mark.parametrize("name, shape", SUPPORTED)
def test_gradients_reach_every_parameter(name: str, shape: tuple[int, ...]) -> None:
    model = build(name, shape).train()
    x, y = batch(shape)
    F.cross_entropy(model(x), y).backward()
    grads = dict(model.named_parameters())
    assert all(p.grad is not None for p in grads.values()), [n for n, p in grads.items() if p.grad is None]
    largest = max(p.grad.abs().max() for p in grads.values())
    assert largest > 0
    # Relative, not "> 0": a conv bias in front of BatchNorm has a zero gradient in exact
    # arithmetic but ~1e-7 of the largest in float32; healthy ones here are >= 5e-5 of it.
    for pname, p in grads.items():
        assert p.grad.abs().max() > 1e-6 * largest, f"{pname} gets (numerically) no gradient"


@pytest.mark.parametrize("name, shape", SMALLEST)
def test_per_example_gradients_with_torch_func(name: str, shape: tuple[int, ...]) -> None:
    """vmap(grad(functional_call)) in eval mode matches a loop of ordinary backward passes."""
    model = build(name, shape).eval()
    x, y = batch(shape, size=3)
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = dict(model.named_buffers())

    def loss(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return F.cross_entropy(logits, yi.unsqueeze(0))

    per_example = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
    for i in range(len(x)):
        model.zero_grad()
        F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        for pname, p in model.named_parameters():
            torch.testing.assert_close(per_example[pname][i], p.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name, shape", SMALLEST)
def test_parameterised_modules_have_readable_names(name: str, shape: tuple[int, ...]) -> None:
    # The Fisher probe reports per-module traces: "features.conv3", not "features.2".
    model = build(name, shape)
    names = [n for n, m in model.named_modules() if n and any(True for _ in m.parameters(recurse=False))]
    assert names
    for n in names:
        assert not any(part.isdigit() for part in n.split(".")), n
    # In-place activations break vmap/functional_call.
    assert not any(getattr(m, "inplace", False) for m in model.modules())


def test_resnet18_parameter_count() -> None:
    model = ResNet18((3, 32, 32), 10)
    assert sum(p.numel() for p in model.parameters()) == 11_173_962


def test_allcnn_channels_follow_width() -> None:
    model = AllCNN((3, 32, 32), 10, width=96, batch_norm=False)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [96, 96, 96, 192, 192, 192, 192, 192]
    assert [c.stride[0] for c in convs] == [1, 1, 2, 1, 1, 2, 1, 1]
    assert [c.kernel_size[0] for c in convs] == [3] * 7 + [1]
    assert model.classifier.out_channels == 10


def test_mlp_widths_as_configured() -> None:
    model = MLP((1, 28, 28), 10, widths=(2500, 2000, 1500, 1000, 500))
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (784, 2500), (2500, 2000), (2000, 1500), (1500, 1000), (1000, 500), (500, 10)
    ]


@pytest.mark.parametrize("shape", ALL_SHAPES, ids=str)
def test_deep_linear_is_linear(shape: tuple[int, ...]) -> None:
    model = build("deep_linear", shape).double()
    x, _ = batch(shape)
    z, _ = batch(shape, seed=2)
    a, b = 2.0, -3.0  # a + b != 1, so a bias would show
    torch.testing.assert_close(model(a * x.double() + b * z.double()), a * model(x.double()) + b * model(z.double()))


@pytest.mark.parametrize("depth, expected", [(1, [(40, 5)]), (3, [(40, 8), (8, 8), (8, 5)])])
def test_deep_linear_depth(depth: int, expected: list[tuple[int, int]]) -> None:
    model = DeepLinear(SIGNAL, NUM_CLASSES, width=8, depth=depth)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == expected
    assert all(m.bias is None for m in linears)


@pytest.mark.parametrize(
    "factory, pattern",
    [
        (lambda: MLP(SIGNAL, 10, widths=()), r"widths.*non-empty"),
        (lambda: MLP(SIGNAL, 10, widths=512), r"^widths=512 is not allowed: it must be a non-empty list"),
        (lambda: MLP(SIGNAL, 10, widths=(16, 0)), r"^widths=\[16, 0\] is not allowed: it must be a non-empty list of whole numbers >= 1"),
        (lambda: MLP(SIGNAL, 10, dropout=-0.1), r"^dropout=-0\.1 is not allowed: it must be a number in \[0, 1\)"),
        (lambda: MLP(SIGNAL, 10, dropout=1.0), r"^dropout=1\.0 is not allowed"),
        (lambda: MLP(SIGNAL, 10, activation="swish"), r"^activation='swish' is not allowed: it must be one of .*relu"),
        (lambda: Conv1DNet(SIGNAL, 10, depth=0), r"^depth=0 is not allowed: it must be a whole number >= 1"),
        (lambda: Conv1DNet(SIGNAL, 10, channels=0), r"^channels=0 is not allowed: it must be a whole number >= 1"),
        (lambda: Conv1DNet(SIGNAL, 10, kernel_size=0), r"^kernel_size=0 is not allowed"),
        (lambda: SimpleCNN((1, 8, 8), 10, channels=[]), r"channels.*non-empty"),
        (lambda: SimpleCNN((1, 8, 8), 10, hidden=0), r"^hidden=0 is not allowed: it must be a whole number >= 1"),
        (lambda: SimpleCNN((1, 8, 8), 10, channels=(4, 4, 4, 4)), r"H and W >= 16.*\(1, 8, 8\)"),
        (lambda: AllCNN((1, 8, 8), 10, width=0), r"^width=0 is not allowed: it must be a whole number >= 1"),
        (lambda: AllCNN((1, 8, 8), 10, dropout=-0.5), r"^dropout=-0\.5 is not allowed"),
        (lambda: ResNet18((1, 8, 8), 10, width=0), r"^width=0 is not allowed: it must be a whole number >= 1"),
        (lambda: DeepLinear(SIGNAL, 10, depth=0), r"^depth=0 is not allowed: it must be a whole number >= 1"),
        (lambda: DeepLinear(SIGNAL, 10, width=-1), r"^width=-1 is not allowed"),
        (lambda: DeepLinear(SIGNAL, 0), r"num_classes.*>= 1.*0"),
    ],
)
def test_bad_hyperparameters_raise_value_error(factory: Callable[[], nn.Module], pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        factory()


@pytest.mark.parametrize(
    "target, kwargs, shape",
    [
        ("critical_periods.models.mlp.MLP", {"widths": [16, 8], "batch_norm": True}, SIGNAL),
        ("critical_periods.models.conv1d.Conv1DNet", {"channels": 4}, SIGNAL),
        ("critical_periods.models.cnn.SimpleCNN", {"channels": [4, 8], "hidden": 16}, (1, 8, 8)),
        ("critical_periods.models.cnn.AllCNN", {"width": 4}, (1, 8, 8)),
        ("critical_periods.models.resnet.ResNet18", {"width": 4}, (1, 8, 8)),
        ("critical_periods.models.deep_linear.DeepLinear", {"width": 8}, SIGNAL),
    ],
)
def test_hydra_partial_instantiation(target: str, kwargs: dict, shape: tuple[int, ...]) -> None:
    """The way the training code builds models: a partial from config (lists as ListConfig)."""
    make = hydra.utils.instantiate({"_target_": target, "_partial_": True, **kwargs})
    model = make(input_shape=shape, num_classes=NUM_CLASSES)
    assert model(batch(shape)[0]).shape == (4, NUM_CLASSES)
