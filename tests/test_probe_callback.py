"""The probe callback in a real (tiny, CPU) Trainer: what it logs, when, and that training is unchanged."""

from __future__ import annotations

import math
import random
from pathlib import Path

import hydra
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from pytorch_lightning.loggers import Logger
from torch import nn

from critical_periods.callbacks.probes import ProbeCallback
from critical_periods.data.arrays import DataArrays
from critical_periods.data.datamodule import DeficitDataModule
from critical_periods.probes import CovarianceOptions, FisherOptions, HessianOptions

CONF = Path(__file__).resolve().parents[1] / "conf" / "probes"
STEPS_PER_EPOCH = 6  # 120 examples - 20% test - 10% val = 86 training examples, batches of 16
EPOCHS = 3

# The tiny module has no validation_step and short epochs; Lightning's notices about that are noise here.
pytestmark = [
    pytest.mark.filterwarnings("ignore:You passed in a `val_dataloader`"),
    pytest.mark.filterwarnings("ignore:The number of training batches"),
]


class RecordingLogger(Logger):
    """Keeps every ``log_metrics`` call as (step, metrics)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[int, dict]] = []

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics, step=None) -> None:
        self.records.append((step, dict(metrics)))

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass


class TinyClassifier(pl.LightningModule):
    """Dropout draws from the global RNG and BatchNorm has running statistics, so any leak of RNG use or
    of train/eval mode from the probes would change the trained weights."""

    def __init__(self) -> None:
        super().__init__()
        self.model = nn.Sequential(
            nn.Conv1d(1, 4, 5, stride=2), nn.BatchNorm1d(4), nn.ReLU(), nn.Flatten(),
            nn.Dropout(0.3), nn.Linear(32, 3),
        )
        self.losses: list[float] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.model(x), y)
        self.losses.append(loss.item())
        return {"loss": loss}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


def tiny_datamodule() -> DeficitDataModule:
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(120) % 3
    x = torch.randn(120, 1, 20, generator=generator) + y.view(-1, 1, 1).float()
    return DeficitDataModule(source=lambda: DataArrays(x, y, None, None, 3), batch_size=16, seed=0)


def fit(callbacks: list[pl.Callback]) -> tuple[TinyClassifier, pl.Trainer, RecordingLogger]:
    pl.seed_everything(0, verbose=False)
    module, logger = TinyClassifier(), RecordingLogger()
    trainer = pl.Trainer(
        max_epochs=EPOCHS, accelerator="cpu", devices=1, logger=logger, callbacks=callbacks,
        enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
        limit_val_batches=0, deterministic=True,
    )
    trainer.fit(module, datamodule=tiny_datamodule())
    return module, trainer, logger


def full_callback(**overrides) -> ProbeCallback:
    options = dict(
        seed=5, probe_size=30, chunk_size=7, fisher=FisherOptions(samples=2), covariance=CovarianceOptions(),
        hessian=HessianOptions(top_k=2, trace_samples=2), delta_loss=True,
        early_steps=3, early_until_step=STEPS_PER_EPOCH,  # steps 1, 2, 6: step 6 is also an epoch end
    )
    return ProbeCallback(**{**options, **overrides})


def test_metrics_logged_with_their_steps_and_epochs():
    module, _, logger = fit([full_callback()])
    probes = [(step, m) for step, m in logger.records if "probe/seconds" in m]
    delta = [(step, m) for step, m in logger.records if "break_even/delta_loss" in m]

    # at start, early steps 1 and 2, then each epoch end (step 6 once, although two schedules hit it)
    epoch_ends = [STEPS_PER_EPOCH * (e + 1) for e in range(EPOCHS)]
    assert [step for step, _ in probes] == [0, 1, 2, *epoch_ends]
    assert [m["epoch"] for _, m in probes] == [0, 0, 0, *range(EPOCHS)]
    layers = ["0", "1", "5"]  # named within pl_module.model, not the LightningModule
    expected_keys = {
        "epoch", "probe/seconds",
        "fisher/trace", *(f"fisher/{kind}/{l}" for kind in ("trace", "share") for l in layers),
        "curvature/lambda_h1", "curvature/lambda_h2", "curvature/trace_h",
        "break_even/lambda_k1", "break_even/trace_k", "break_even/cond_k",
        "grad/norm", "grad/mean", "grad/std",
    }
    for _, metrics in probes:
        assert set(metrics) == expected_keys
        assert all(type(v) is float and math.isfinite(v) for k, v in metrics.items() if k != "epoch")

    assert [(step, m["epoch"]) for step, m in delta] == [(s, e) for e, s in enumerate(epoch_ends)]
    differences = np.diff(module.losses)
    for epoch, (_, metrics) in enumerate(delta):
        # epoch e holds the differences ending at its steps (the first one spans the epoch boundary)
        in_epoch = differences[max(0, epoch * STEPS_PER_EPOCH - 1) : (epoch + 1) * STEPS_PER_EPOCH - 1]
        assert metrics["break_even/delta_loss"] == pytest.approx(in_epoch.mean(), rel=1e-6)
        assert metrics["break_even/delta_loss_abs"] == pytest.approx(np.abs(in_epoch).mean(), rel=1e-6)


def test_probes_leave_training_bitwise_unchanged():
    def fit_and_snapshot(callbacks):
        module, trainer, _ = fit(callbacks)
        optimizer = trainer.optimizers[0].state_dict()["state"]
        return {
            "weights": [t.clone() for t in module.state_dict().values()],  # parameters and BN buffers
            "momentum": [optimizer[i]["momentum_buffer"] for i in sorted(optimizer)],
            "grads": [p.grad for p in module.parameters()],
            "modes": [m.training for m in module.modules()],
            "rng": (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()),
        }

    without = fit_and_snapshot([])
    with_probes = fit_and_snapshot([full_callback()])
    for key in ("weights", "momentum", "grads"):
        pairs = zip(without[key], with_probes[key], strict=True)
        assert all((a is None and b is None) or torch.equal(a, b) for a, b in pairs), key
    assert without["modes"] == with_probes["modes"]
    assert torch.equal(without["rng"][0], with_probes["rng"][0])
    assert np.array_equal(without["rng"][1], with_probes["rng"][1])
    assert without["rng"][2] == with_probes["rng"][2]


def test_non_finite_results_are_logged_as_nan_with_a_warning():
    callback = full_callback(every_n_epochs=0, early_steps=0, delta_loss=False)  # the at-start probe only
    pl.seed_everything(0, verbose=False)
    module, logger = TinyClassifier(), RecordingLogger()
    with torch.no_grad():
        module.model[5].weight.fill_(float("nan"))
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=logger, callbacks=[callback],
                         enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
                         limit_val_batches=0)
    with pytest.warns(RuntimeWarning) as warned:
        trainer.fit(module, datamodule=tiny_datamodule())
    messages = [str(w.message) for w in warned]
    assert any("non-finite probe results" in m for m in messages)
    assert any("Lanczos met a non-finite" in m for m in messages)  # the probe says why, too
    (step, metrics), = [(s, m) for s, m in logger.records if "probe/seconds" in m]
    assert step == 0
    assert math.isnan(metrics["fisher/trace"]) and math.isnan(metrics["break_even/lambda_k1"])
    assert math.isnan(metrics["curvature/lambda_h1"])


def test_probe_configs_build_the_callback():
    assert not OmegaConf.load(CONF / "none.yaml")  # empty: the training code adds no callback
    built = {}
    for name in ("fisher", "break_even", "full"):
        cfg = OmegaConf.create({"seed": 11, "probes": OmegaConf.load(CONF / f"{name}.yaml")})
        built[name] = hydra.utils.instantiate(cfg.probes)
        assert isinstance(built[name], ProbeCallback) and built[name].seed == 11
    assert isinstance(built["fisher"].fisher, FisherOptions) and built["fisher"].hessian is None
    assert built["break_even"].fisher is None and isinstance(built["break_even"].hessian, HessianOptions)
    full = built["full"]
    assert full.fisher.exact and full.covariance is not None and full.hessian is not None and full.delta_loss
