"""The probes compute in float32 whatever the training precision (bf16-mixed on the CPU here; 16-mixed
needs a GPU and is not run)."""

import hydra
import pytest
import torch

from critical_periods.record.metric_names import FISHER_TRACE, LAMBDA_H1, STEP
from critical_periods.models.cnn import SimpleCNN
from critical_periods.probes import FisherOptions, HessianOperator, HessianOptions, compute_probes
from critical_periods.probes.context import full_precision, probe_mode
from critical_periods.record.metrics import read_metrics
from critical_periods.build import build_datamodule
from critical_periods.train import train


def probe_all(model, x, y):
    return compute_probes(model, x, y, fisher=FisherOptions(exact=True), chunk_size=5,
                          hessian=HessianOptions(top_k=1, trace_samples=2), generator=torch.Generator().manual_seed(0))


def small_case():
    torch.manual_seed(0)
    model = SimpleCNN((3, 8, 8), 4, channels=[3, 5], hidden=7)  # odd sizes, convs and linears: autocast casts both
    return model, torch.randn(11, 3, 8, 8), torch.randint(0, 4, (11,))


def test_probe_mode_computes_in_float32_under_autocast():
    model, x, y = small_case()
    fisher = lambda: compute_probes(model, x, y, fisher=FisherOptions(exact=True), chunk_size=5)  # noqa: E731
    v = torch.randn(sum(p.numel() for p in model.parameters()), generator=torch.Generator().manual_seed(1))
    hessian_product = lambda: HessianOperator(model, x, y, chunk_size=5) @ v  # noqa: E731
    reference, reference_hv = fisher(), hessian_product()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(x).dtype == torch.bfloat16  # autocast is really on out here
        with probe_mode(model):
            assert model(x).dtype == torch.float32  # and off inside the probes
        under_autocast, under_autocast_hv = fisher(), hessian_product()
    assert under_autocast == reference  # every Fisher number, bit for bit
    assert under_autocast_hv.dtype == torch.float32 and torch.equal(under_autocast_hv, reference_hv)


def test_every_probe_inside_full_precision_equals_the_float32_computation():
    # Lanczos and Hutchinson run float32 products between the Hessian-vector products, outside
    # probe_mode: the whole probe call must sit inside full_precision (compute_probes, see the report).
    model, x, y = small_case()
    reference = probe_all(model, x, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with full_precision(model):
            under_autocast = probe_all(model, x, y)
        assert model(x).dtype == torch.bfloat16  # restored on exit
    assert under_autocast == reference


def test_half_precision_parameters_are_refused_with_the_config_key():
    model = SimpleCNN((3, 8, 8), 4, channels=[3], hidden=7).to(torch.bfloat16)
    with pytest.raises(ValueError, match=r"features\.conv1\.weight is torch\.bfloat16: use trainer\.precision="):
        with probe_mode(model):
            pass


def test_bf16_mixed_run_logs_the_float32_fisher_trace(make_cfg, tmp_path):
    cfg = make_cfg("trainer.precision=bf16-mixed", "trainer.accelerator=cpu", "probes=fisher", "probes.fisher.exact=true",
                   "probes.probe_size=40", "probes.at_start=false", "checkpoint.min_seconds=0")
    summary = train(cfg)
    assert summary.status == "completed"
    rows = [r for r in read_metrics(tmp_path) if FISHER_TRACE in r]
    last = max(rows, key=lambda r: r[STEP])
    # Recompute on the final weights (the last checkpoint, written after the last epoch) in float32.
    datamodule = build_datamodule(cfg)
    model = hydra.utils.instantiate(cfg.model)(input_shape=datamodule.input_shape, num_classes=datamodule.num_classes)
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    assert all(p.dtype == torch.float32 for p in model.parameters())
    x, y = datamodule.probe_set(cfg.probes.probe_size, cfg.probes.seed)
    expected = compute_probes(model, x, y, fisher=FisherOptions(exact=True), chunk_size=cfg.probes.chunk_size).metrics
    assert last[FISHER_TRACE] == pytest.approx(expected[FISHER_TRACE], rel=1e-5)
    assert LAMBDA_H1 not in last  # probes=fisher only
