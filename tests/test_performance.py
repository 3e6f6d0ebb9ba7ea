"""channels_last and torch.compile: same numbers, same module for the probes and checkpoints."""

import pytest
import pytorch_lightning as pl
import torch

from critical_periods.data.datamodule import DeficitDataModule
from critical_periods.data.digits import load_digits
from critical_periods.models.cnn import AllCNN, SimpleCNN
from critical_periods.models.mlp import MLP
from critical_periods.models.performance import prepare_model
from critical_periods.models.resnet import ResNet18
from critical_periods.module import ClassifierModule
from critical_periods.probes import FisherOptions, HessianOptions, compute_probes
from critical_periods.schedule import LrFactor

CONV_NETS = {
    "simple_cnn": lambda: SimpleCNN((3, 8, 8), 5, channels=[3, 6], hidden=7),
    "all_cnn": lambda: AllCNN((3, 8, 8), 5, width=3),
    "resnet18": lambda: ResNet18((3, 8, 8), 5, width=2),
}


def twins(name):
    torch.manual_seed(0)
    plain = CONV_NETS[name]().double().eval()
    fast = CONV_NETS[name]().double().eval()
    fast.load_state_dict(plain.state_dict())
    assert prepare_model(fast, channels_last=True) is fast
    return plain, fast


@pytest.mark.parametrize("name", sorted(CONV_NETS))
def test_channels_last_gives_the_same_outputs_gradients_and_probes(name):
    plain, fast = twins(name)
    convs = [m.weight for m in fast.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs if w.shape[-1] > 1)
    x, y = torch.randn(6, 3, 8, 8, dtype=torch.float64), torch.arange(6) % 5
    torch.testing.assert_close(fast(x), plain(x), rtol=1e-10, atol=1e-12)
    for model in (plain, fast):
        torch.nn.functional.cross_entropy(model(x), y).backward()
    for p, q in zip(plain.parameters(), fast.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-9, atol=1e-12)
    options = dict(fisher=FisherOptions(exact=True), hessian=HessianOptions(trace_samples=2), chunk_size=4)
    expected = compute_probes(plain, x, y, generator=torch.Generator().manual_seed(0), **options).metrics
    got = compute_probes(fast, x, y, generator=torch.Generator().manual_seed(0), **options).metrics
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-10), key


def test_models_without_conv_weights_are_unchanged_and_bad_values_are_refused():
    mlp = MLP((1, 12), 3, widths=[5])
    before = {k: v.clone() for k, v in mlp.state_dict().items()}
    assert prepare_model(mlp, channels_last=True) is mlp
    assert all(torch.equal(before[k], v) for k, v in mlp.state_dict().items())
    with pytest.raises(ValueError, match=r"^performance\.compile='yes' is not allowed: it must be true or false"):
        prepare_model(mlp, compile="yes")


def test_compile_without_a_cxx_compiler_is_refused_with_a_clear_message(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no compiler on PATH
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(ValueError, match=r"^performance\.compile=true is not allowed here: torch\.compile needs a C\+\+ compiler"):
        prepare_model(MLP((1, 12), 3, widths=[5]), compile=True)


class Counted:
    """A forward function that counts its calls (stands in for a compiled one, which costs a minute)."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def __call__(self, x):
        self.calls += 1
        return self.model(x)


def test_module_trains_through_the_given_forward_and_keeps_one_plain_model():
    datamodule = DeficitDataModule(load_digits, batch_size=256, seed=0)
    datamodule.setup()
    torch.manual_seed(0)
    model = SimpleCNN(datamodule.input_shape, 10, channels=[4], hidden=8)
    forward = Counted(model)
    module = ClassifierModule(model, 10, lambda p: torch.optim.SGD(p, lr=0.1), LrFactor(), compiled_forward=forward)
    plain_keys = set(ClassifierModule(model, 10, None, LrFactor()).state_dict())
    assert set(module.state_dict()) == plain_keys  # nothing extra in the checkpoints
    assert ClassifierModule(model, 10, None, LrFactor(), compiled_forward=prepare_model(model)).compiled_forward is None
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=datamodule)
    train_batches, val_batches = len(datamodule.train_dataloader()), len(datamodule.val_dataloader()[0])
    assert forward.calls == train_batches + val_batches
    with pytest.raises(TypeError, match="compiled_forward must be a function"):
        ClassifierModule(model, 10, None, LrFactor(), compiled_forward=torch.nn.Identity())


@pytest.mark.slow
def test_compiled_forward_matches_eager_on_cpu():
    # Measured here: 50-70 s to compile this tiny net on a cold cache (g++), ~14 s with a warm one.
    torch.manual_seed(0)
    model = SimpleCNN((3, 8, 8), 5, channels=[3, 6], hidden=7)
    compiled = prepare_model(model, channels_last=True, compile=True)
    assert compiled is not model
    x, y = torch.randn(6, 3, 8, 8), torch.arange(6) % 5
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-6)
    grads = []
    for forward in (model, compiled):
        model.zero_grad()
        torch.nn.functional.cross_entropy(forward(x), y).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for eager, fused in zip(*grads):
        torch.testing.assert_close(fused, eager, rtol=1e-5, atol=1e-6)
