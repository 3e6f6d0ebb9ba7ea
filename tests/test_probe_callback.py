"""The probe callback in a real (tiny, CPU) Trainer: what it logs, when, and that training is unchanged."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import hydra
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import Logger
from torch import nn

from critical_periods.record import metric_names as names
from critical_periods.record.layout import STIFFNESS_FILE
from critical_periods.callbacks.probes import ProbeCallback
from critical_periods.data.arrays import DataArrays
from critical_periods.data.datamodule import DeficitDataModule
from critical_periods.probes import CovarianceOptions, FisherOptions, HessianOptions, StiffnessOptions

CONF = Path(__file__).resolve().parents[1] / "conf"
STEPS_PER_EPOCH = 5  # 120 examples - 20% test - 10% val = 86 training examples: 5 full batches of 16 (remainder dropped)
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


def fit(
    callbacks: list[pl.Callback], root: Path | None = None, ckpt_path: Path | None = None
) -> tuple[TinyClassifier, pl.Trainer, RecordingLogger]:
    pl.seed_everything(0, verbose=False)
    module, logger = TinyClassifier(), RecordingLogger()
    trainer = pl.Trainer(
        max_epochs=EPOCHS, accelerator="cpu", devices=1, logger=logger, callbacks=callbacks,
        enable_progress_bar=False, enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        enable_model_summary=False, limit_val_batches=0, deterministic=True, default_root_dir=root,
    )
    trainer.fit(module, datamodule=tiny_datamodule(), ckpt_path=ckpt_path)
    return module, trainer, logger


def full_callback(**overrides) -> ProbeCallback:
    options = dict(
        seed=5, probe_size=30, chunk_size=7, fisher=FisherOptions(samples=2),
        covariance=CovarianceOptions(batch_size=8, batches=4, per_example=True),
        hessian=HessianOptions(top_k=2, trace_samples=2), stiffness=StiffnessOptions(), delta_loss=True,
        early_steps=3, early_until_step=STEPS_PER_EPOCH,  # steps 1, 2, 5: step 5 is also an epoch end
    )
    return ProbeCallback(**{**options, **overrides})


def stiffness_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / STIFFNESS_FILE).read_text().splitlines()]


def test_metrics_logged_with_their_steps_and_epochs(tmp_path):
    module, _, logger = fit([full_callback()], root=tmp_path)
    probes = [(step, m) for step, m in logger.records if "probe/seconds" in m]
    delta = [(step, m) for step, m in logger.records if "break_even/delta_loss" in m]

    # at start, early steps 1 and 2, then each epoch end (step 5 once, although two schedules hit it)
    epoch_ends = [STEPS_PER_EPOCH * (e + 1) for e in range(EPOCHS)]
    assert [step for step, _ in probes] == [0, 1, 2, *epoch_ends]
    assert [m["epoch"] for _, m in probes] == [0, 0, 0, *range(EPOCHS)]
    layers = ["0", "1", "5"]  # named within pl_module.model, not the LightningModule
    expected_keys = {
        "epoch", "probe/seconds",
        "fisher/trace", *(f"fisher/{kind}/{l}" for kind in ("trace", "share") for l in layers),
        "curvature/lambda_h1", "curvature/lambda_h2", "curvature/trace_h",
        "break_even/lambda_k1", "break_even/trace_k", "break_even/cond_k", "break_even/trace_k_ratio",
        "break_even/per_example/lambda_k1", "break_even/per_example/trace_k", "break_even/per_example/cond_k",
        "stiffness/cos_same_class", "stiffness/cos_diff_class", "stiffness/sign_same_class",
        "stiffness/sign_diff_class", "grad/norm", "grad/mean", "grad/std",
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


def test_probes_leave_training_bitwise_unchanged(tmp_path):
    def fit_and_snapshot(callbacks):
        module, trainer, _ = fit(callbacks, root=tmp_path)
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


def test_non_finite_results_are_logged_as_nan_with_a_warning(tmp_path):
    callback = full_callback(every_n_epochs=0, early_steps=0, delta_loss=False)  # the at-start probe only
    pl.seed_everything(0, verbose=False)
    module, logger = TinyClassifier(), RecordingLogger()
    with torch.no_grad():
        module.model[5].weight.fill_(float("nan"))
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=logger, callbacks=[callback],
                         enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
                         limit_val_batches=0, default_root_dir=tmp_path)
    with pytest.warns(RuntimeWarning) as warned:
        trainer.fit(module, datamodule=tiny_datamodule())
    messages = [str(w.message) for w in warned]
    assert any("non-finite probe results" in m for m in messages)
    assert any("Lanczos met a non-finite" in m for m in messages)  # the probe says why, too
    (step, metrics), = [(s, m) for s, m in logger.records if "probe/seconds" in m]
    assert step == 0
    assert math.isnan(metrics["fisher/trace"]) and math.isnan(metrics["break_even/lambda_k1"])
    assert math.isnan(metrics["curvature/lambda_h1"])


@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`")  # the saver is not needed again
def test_stiffness_matrices_saved_at_start_and_epoch_ends_and_trimmed_on_resume(tmp_path):
    callback = lambda: full_callback(fisher=None, covariance=None, hessian=None, delta_loss=False)  # noqa: E731
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1, save_on_train_epoch_end=True)
    _, _, logger = fit([callback(), saver], root=tmp_path)
    rows = stiffness_rows(tmp_path)
    epoch_ends = [STEPS_PER_EPOCH * (e + 1) for e in range(EPOCHS)]
    assert [(r["step"], r["epoch"]) for r in rows] == [(0, 0), *((s, e) for e, s in enumerate(epoch_ends))]
    logged = {step: m for step, m in logger.records if names.STIFFNESS_COS_SAME in m}
    for row in rows:
        matrix = torch.tensor(row["matrix"], dtype=torch.float64)
        assert matrix.shape == (3, 3) and torch.allclose(matrix, matrix.T)
        # The stratified probe set has 10 examples per class: every class (pair) has as many pairs,
        # so the pair averages are the plain means of the matrix's diagonal and off-diagonal cells.
        off = ~torch.eye(3, dtype=torch.bool)
        assert logged[row["step"]][names.STIFFNESS_COS_SAME] == pytest.approx(float(matrix.diagonal().mean()))
        assert logged[row["step"]][names.STIFFNESS_COS_DIFF] == pytest.approx(float(matrix[off].mean()))

    # Resume after the second epoch: the third epoch's row is dropped and logged again, once.
    (checkpoint,) = (tmp_path / "ckpt").glob("epoch=1-*.ckpt")
    _, _, resumed = fit([callback()], root=tmp_path, ckpt_path=checkpoint)
    assert [(r["step"], r["epoch"]) for r in stiffness_rows(tmp_path)] == [(r["step"], r["epoch"]) for r in rows]
    assert [step for step, m in resumed.records if "probe/seconds" in m] == [epoch_ends[-1]]  # no re-probe at start


def test_gradient_batches_are_disjoint_seeded_training_examples():
    datamodule = tiny_datamodule()
    datamodule.setup()
    inputs, labels = datamodule.gradient_batches(4, 8, seed=3)
    assert inputs.shape == (32, 1, 20) and labels.shape == (32,)
    rows = {tuple(x.flatten().tolist()) for x in inputs}
    training = {tuple(x.flatten().tolist()): y for x, y in zip(datamodule.x_train, datamodule.y_train.tolist())}
    assert len(rows) == 32 and all(training[r] == y for r, y in zip(map(tuple, inputs.flatten(1).tolist()), labels.tolist()))
    again, _ = datamodule.gradient_batches(4, 8, seed=3)
    other, _ = datamodule.gradient_batches(4, 8, seed=4)
    assert torch.equal(inputs, again) and not torch.equal(inputs, other)
    with pytest.raises(ValueError, match=r"probes\.covariance\.batches=11 x probes\.covariance\.batch_size=8 = 88"):
        datamodule.gradient_batches(11, 8, seed=3)


def compose_probes(option: str, *overrides: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"probes={option}", "seed=11", "paths.output_dir=unused", *overrides])
    return hydra.utils.instantiate(cfg.probes)


def test_probe_configs_build_the_callback():
    assert not OmegaConf.load(CONF / "probes" / "none.yaml")  # empty: the training code adds no callback
    built = {name: compose_probes(name) for name in ("fisher", "break_even", "full")}
    assert all(isinstance(b, ProbeCallback) and b.seed == 11 for b in built.values())
    assert isinstance(built["fisher"].fisher, FisherOptions) and built["fisher"].hessian is None
    assert built["fisher"].covariance is None and built["fisher"].stiffness is None
    assert built["break_even"].fisher is None and isinstance(built["break_even"].hessian, HessianOptions)
    assert built["break_even"].covariance == CovarianceOptions(batch_size=128, batches=25, per_example=False)
    full = built["full"]
    assert full.fisher.exact and full.hessian is not None and full.delta_loss
    assert full.covariance == built["break_even"].covariance and full.hessian == built["break_even"].hessian
    assert full.stiffness == StiffnessOptions(matrix_every_n_epochs=1)
    # full composes break_even: a change there reaches full
    assert compose_probes("full", "probes.covariance.batches=7").covariance.batches == 7


def test_the_global_random_streams_survive_a_weights_only_checkpoint(tmp_path):
    import io
    import random

    import numpy as np
    import torch

    from critical_periods.callbacks.random_states import RandomStates

    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    saved = io.BytesIO()
    torch.save({"callbacks": {"RandomStates": RandomStates().state_dict()}}, saved)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(9), np.random.seed(9), random.seed(9)  # anything in between
    saved.seek(0)
    RandomStates().load_state_dict(torch.load(saved, weights_only=True)["callbacks"]["RandomStates"])
    drawn = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(drawn[0], expected[0]) and np.array_equal(drawn[1], expected[1]) and drawn[2] == expected[2]
