"""Hu et al. (2020)'s pieces: the teacher task, the linear model's GD step (by hand, float64), its
kernel against the network's brute-force tangent kernel, a real short run, and the claims on fixtures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from critical_periods.data.teacher import load_teacher, teacher_tensors
from critical_periods.early_time import run as grid_run
from critical_periods.early_time.gd import EarlyRunConfig, log_steps, run_early
from critical_periods.early_time.linear_model import ERF_ZETA, EarlyLinearModel
from critical_periods.early_time.network import TwoLayerErf
from critical_periods.reproduction import claims_early_linear as cel
from critical_periods.reproduction.claims import Judge
from critical_periods.reproduction.rules import load_rules
from critical_periods.vocabulary import Verdict


def test_teacher_labels_are_the_sign_of_the_erf_teacher_and_seeded():
    x, y, x_test, y_test = teacher_tensors(300, 50, 7, 5, 3)
    g = torch.Generator().manual_seed(3)  # the loader's draw order: inputs, teacher weights, teacher readout
    x_all = torch.randn(350, 7, generator=g, dtype=torch.float64)
    w = torch.randn(5, 7, generator=g, dtype=torch.float64)
    a = torch.randn(5, generator=g, dtype=torch.float64)
    f_star = sum(a[k] * torch.erf(x_all @ w[k] / math.sqrt(7)) for k in range(5))
    assert torch.equal(torch.cat([x, x_test]), x_all)
    assert torch.equal(torch.cat([y, y_test]), torch.sign(f_star))
    assert not torch.equal(teacher_tensors(300, 50, 7, 5, 4)[1], y)  # another seed, another task
    arrays = load_teacher(300, 50, 7, 5, 3)
    assert arrays.x_train.shape == (300, 1, 7) and arrays.num_classes == 2
    assert torch.equal(arrays.y_train, (y > 0).long())


def test_linear_model_steps_are_hand_computed_gd():
    x = torch.tensor([[1.0, 2.0], [0.0, -1.0], [3.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    lr = 0.3
    model = EarlyLinearModel(x, y, lr)
    c = math.sqrt(2.0) * 2.0 / math.sqrt(3.0 * math.pi) / math.sqrt(2.0)  # sqrt(2) zeta / sqrt(d), d = 2
    psi = np.hstack([c * x.numpy(), np.zeros((3, 1))])  # nu = 0 for erf
    beta = np.zeros(3)
    for _ in range(2):  # (1/2n) sum (psi beta - y)^2 has gradient psi^T (psi beta - y) / n
        beta = beta - lr * psi.T @ (psi @ beta - y.numpy()) / 3
        model.step()
        np.testing.assert_allclose(model.beta.numpy(), beta, rtol=1e-12, atol=1e-15)
    x_new = torch.tensor([[0.5, -2.0]], dtype=torch.float64)
    np.testing.assert_allclose(model(x_new).numpy(), c * x_new.numpy() @ beta[:2], rtol=1e-12)
    shuffled = model(x_new, shuffle=torch.tensor([1, 0]))
    np.testing.assert_allclose(shuffled.numpy(), c * x_new.numpy() @ beta[[1, 0]], rtol=1e-12)


def test_zeta_is_the_gaussian_mean_of_erf_prime():
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)  # E[h(g)] = sum w h(node) / sqrt(2 pi)
    mean = np.sum(weights * 2 / np.sqrt(np.pi) * np.exp(-nodes**2)) / np.sqrt(2 * np.pi)
    assert ERF_ZETA == pytest.approx(mean, rel=1e-12)


def test_linear_kernel_matches_the_networks_tangent_kernel_at_init():
    """Brute force: Theta(x, x') = grad f(x) . grad f(x') by autograd, float64, wide network; the
    linear model's kernel is 2 zeta^2 x.x'/d off the diagonal (to O(rho^3) and O(1/sqrt(m)))."""
    d, m = 50, 40000
    g = torch.Generator().manual_seed(0)
    net = TwoLayerErf(d, m, generator=g, dtype=torch.float64)
    x = torch.randn(2, d, generator=g, dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True) * math.sqrt(d)
    for rho in (0.3, -0.2, 0.0):  # x1 = rho x0 + sqrt(1 - rho^2) (x1 orthogonalised and rescaled)
        u = x[0] / math.sqrt(d)
        v = x[1] - (x[1] @ u) * u
        v = v / v.norm()
        pair = torch.stack([x[0], math.sqrt(d) * (rho * u + math.sqrt(1 - rho**2) * v)])
        grads = []
        for row in pair:
            net.zero_grad()
            net(row[None]).sum().backward()
            grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]).clone())
        theta = float(grads[0] @ grads[1])
        assert theta == pytest.approx(2 * ERF_ZETA**2 * rho, abs=0.012)


def test_mirrored_start_outputs_zero():
    net = TwoLayerErf(10, 64, generator=torch.Generator().manual_seed(1))
    assert net(torch.randn(5, 10)).abs().max() < 1e-6  # zero up to float32 rounding of the sum
    with pytest.raises(ValueError, match="width=63"):
        TwoLayerErf(10, 63)


def test_wide_network_tracks_the_linear_model_early_in_a_real_run():
    r = run_early(EarlyRunConfig(input_dim=50, width=4096, num_samples=1000, test_samples=200,
                                 lr_per_dim=0.1, steps=20, log_points=5))
    assert r["step"][0] == 0 and r["step"][-1] == 20
    rel = r["mse"][-1] / r["lin_sq"][-1]
    rel_control = r["mse_control"][-1] / r["lin_sq"][-1]
    assert r["lin_sq"][-1] > 0.1  # the linear model has learnt something
    assert rel < 0.03, rel
    assert rel_control > 0.5, rel_control  # the check can fail: a wrong linear model is far off


def test_log_steps_are_dense_early_and_end_at_the_last():
    steps = log_steps(200, 30)
    assert steps[:5] == [0, 1, 2, 3, 4] and steps[-1] == 200 and steps == sorted(set(steps))
    assert 10 not in steps and 10 in log_steps(200, 30, (10, 500))  # the rules' step is always there
    assert 500 not in log_steps(200, 30, (10, 500))


def test_grid_refuses_bad_input_in_one_line(tmp_path, capsys):
    assert grid_run.main(["--out", str(tmp_path), "--dims", "a,b"]) == 2
    assert grid_run.main(["--out", str(tmp_path), "--width", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: dims='a,b' is not allowed: it must be a comma-separated list of whole numbers",
                   "error: width=5 is not allowed: it must be an even whole number (units come in mirrored pairs)"]
    assert not list(tmp_path.iterdir())  # refused before any run


def fixture_run(dim: int, seed: int, early: float, late: float, control: float) -> dict:
    """A run record whose relative MSE is ``early`` at step 10, ``late`` at 200; the control's is ``control``."""
    steps = [0, 1, 10, 100, 200]
    rel = [0.0, early, early, late, late]
    lin_sq = [0.0, 0.5, 0.6, 0.6, 0.6]
    return {"config": {"input_dim": dim, "seed": seed}, "step": steps, "lin_sq": lin_sq,
            "mse": [r * p for r, p in zip(rel, lin_sq)], "mse_control": [control * p for p in lin_sq]}


@pytest.fixture(scope="module")
def judge():
    return Judge(load_rules())


def test_claims_reproduce_on_an_early_linear_fixture_and_the_controls_do_not(judge, tmp_path):
    rng = np.random.default_rng(0)
    runs = []
    for seed in range(5):
        jitter = float(rng.uniform(0.9, 1.1))
        for dim, early in ((20, 0.02), (50, 0.01), (100, 0.004)):
            runs.append(fixture_run(dim, seed, early * jitter, 0.3 * jitter, 1.5 * jitter))
        runs.append(fixture_run(50, 100 + seed, 0.01 * float(rng.uniform(0.9, 1.1)), 0.3, 1.5))
    window, dimension = cel.early_linear_claims(judge, runs)
    assert window.status is Verdict.REPRODUCED and dimension.status is Verdict.REPRODUCED
    for claim in (window, dimension):
        assert claim.control.status in (Verdict.NOT_REPRODUCED, Verdict.INCONCLUSIVE)
    assert window.control.status is Verdict.NOT_REPRODUCED  # the shuffled model is never close
    paths = cel.draw_figure(runs, tmp_path)
    assert all(p.stat().st_size > 0 for p in paths)


def test_window_claim_fails_when_the_network_never_matches(judge):
    runs = [fixture_run(d, s, 0.4, 0.5, 1.5) for s in range(5) for d in (20, 50, 100)]
    window, dimension = cel.early_linear_claims(judge, runs)
    assert window.status is Verdict.NOT_REPRODUCED
    assert dimension.status is not Verdict.REPRODUCED  # equal at every d


def test_teacher_task_trains_in_the_pipeline_with_the_erf_mlp(tmp_path):
    """data=teacher and model=erf_mlp as a user would run them: a real (tiny) Lightning run."""
    import json

    from conftest import run_cli

    from critical_periods.record import metric_names as names

    run_dir = tmp_path / "run"
    result = run_cli("data=teacher", "model=erf_mlp", "data.source.num_samples=400", "data.source.test_samples=100",
                     "data.source.input_dim=8", "logger=none", "probes=none", "deficit=none", "schedule.mode=fixed",
                     "schedule.epochs=2", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert 0.5 < summary[names.FINAL_TEST_ACC] <= 1.0  # above chance: the task is mostly linear


@pytest.mark.slow
def test_quick_study_runs_draws_its_figure_and_is_judged(tmp_path, judge):
    from critical_periods.reproduction.studies_early_linear import EARLY_LINEAR_STUDIES

    study = EARLY_LINEAR_STUDIES[0]
    elapsed = study.run(tmp_path, quick=True, threads=1)
    assert elapsed > 0
    runs = cel.load_runs(tmp_path / study.name)
    assert sorted((r["config"]["input_dim"], r["config"]["seed"]) for r in runs) == [(20, 0), (50, 0)]
    assert (tmp_path / study.name / "analysis" / cel.FIGURE).exists()
    window, _ = cel.early_linear_claims(judge, runs)
    assert window.status is Verdict.INCONCLUSIVE  # one seed
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / study.name).glob("*.json")}
    study.run(tmp_path, quick=True, threads=1)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / study.name).glob("*.json")} == before  # finished: skipped
