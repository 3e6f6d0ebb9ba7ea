"""Representation probes (CKA vs init, frequency) on tiny float64 models; saved representations on disk."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from torch import nn

from critical_periods.record import metric_names as names
from critical_periods.callbacks.probes import ProbeCallback
from critical_periods.record.metric_names import FREQUENCY_ERROR_HIGH, FREQUENCY_ERROR_LOW, cka_vs_init
from critical_periods.probes.cka import linear_cka
from critical_periods.probes.frequency import frequency_metrics, low_pass_weights
from critical_periods.probes.representation_probes import (
    RepresentationOptions,
    RepresentationProbe,
    cka_between_runs,
    layer_cka_matrix,
    representation_metrics,
)
from critical_periods.probes.representations import (
    layer_representations,
    load_representations,
    representations_path,
    save_representations,
    saved_epochs,
)
from critical_periods.record.metrics import read_metrics

F64 = torch.float64


class _Odd(nn.Module):
    """Odd widths, a Linear used twice, a scalar parameter, dropout (off in eval mode)."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(7, 9)
        self.shared = nn.Linear(9, 9)
        self.temperature = nn.Parameter(torch.tensor(0.7))
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(9, 3)

    def forward(self, x):
        h = torch.tanh(self.shared(torch.tanh(self.first(x))))
        h = self.dropout(torch.tanh(self.shared(h)))
        return self.head(h) / self.temperature


def _probe_set(n: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 7, generator=g, dtype=F64), torch.arange(n) % 3


def _perturb(model: nn.Module, scale: float = 0.5) -> None:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def test_metrics_at_the_start_and_after_training_match_brute_force():
    torch.manual_seed(0)
    model = _Odd().double().train()
    x, y = _probe_set()
    options = RepresentationOptions(delta=2.0)
    rng = torch.random.get_rng_state()
    start, initial = representation_metrics(model, x, y, options, initial=None, chunk_size=7)
    assert torch.equal(torch.random.get_rng_state(), rng) and model.training and model.dropout.training
    assert list(initial) == ["root", "first", "shared", "head"]
    for layer in initial:
        assert start[cka_vs_init(layer)] == pytest.approx(1.0, abs=1e-12)

    # by hand: the layers' outputs and the logits, eval mode (no dropout)
    def by_hand(m):
        with torch.no_grad():
            a = m.first(x)
            s1 = m.shared(torch.tanh(a))
            s2 = m.shared(torch.tanh(s1))
            z = m.head(torch.tanh(s2))
            return {"root": z / m.temperature, "first": a, "shared": torch.cat([s1, s2], 1), "head": z}

    before = by_hand(model)
    _perturb(model)
    metrics, now = representation_metrics(model, x, y, options, initial=initial)
    after = by_hand(model)
    for layer, value in before.items():
        assert metrics[cka_vs_init(layer)] == pytest.approx(float(linear_cka(value, after[layer])), rel=1e-9)
        torch.testing.assert_close(now[layer], after[layer])
    assert metrics[cka_vs_init("first")] < 0.99
    expected = frequency_metrics(y, after["root"], low_pass_weights(x, 2.0))
    assert {k: metrics[k] for k in expected} == pytest.approx(expected, rel=1e-12)
    assert set(metrics) == {*(cka_vs_init(layer) for layer in before), FREQUENCY_ERROR_LOW, FREQUENCY_ERROR_HIGH}


def test_options_switch_the_probes_off():
    model = _Odd().double()
    x, y = _probe_set()
    only_frequency, reps = representation_metrics(model, x, y, RepresentationOptions(cka=False), initial=None)
    assert set(only_frequency) == {FREQUENCY_ERROR_LOW, FREQUENCY_ERROR_HIGH} and reps
    only_cka, _ = representation_metrics(model, x, y, RepresentationOptions(frequency=False), initial=reps)
    assert set(only_cka) == {cka_vs_init(layer) for layer in reps}


def test_options_refuse_bad_values_naming_the_key():
    with pytest.raises(ValueError, match=r"probes\.representation\.delta=-1\.0 .* > 0"):
        RepresentationOptions(delta=-1.0)
    with pytest.raises(ValueError, match=r"probes\.representation\.save_every_n_epochs=2\.5 .* whole number"):
        RepresentationOptions(save_every_n_epochs=2.5)


def test_save_schedule():
    assert [e for e in range(8) if RepresentationOptions(save_every_n_epochs=3).saves_at(e)] == [0, 3, 6]
    # CKA vs init needs the initial representations on disk (a resumed run reloads them)
    assert [e for e in range(8) if RepresentationOptions(save_every_n_epochs=0).saves_at(e)] == [0]
    assert not any(RepresentationOptions(cka=False).saves_at(e) for e in range(8))


# -- on disk ---------------------------------------------------------------------------------------------


def _representations(seed: int = 0, n: int = 64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"features.conv1": torch.randn(n, 640, generator=g), "head": torch.randn(n, 10, generator=g)}


def test_save_and_load_round_trip_in_float16_with_the_stated_size(tmp_path):
    reps, inputs = _representations(), torch.randn(64, 1, 40)
    path = save_representations(tmp_path, 3, reps, inputs)
    assert path == tmp_path / "representations" / "epoch_0003.npz" == representations_path(tmp_path, 3)
    loaded = load_representations(tmp_path, 3)
    assert list(loaded) == list(reps)
    for name, z in reps.items():
        assert loaded[name].dtype == torch.float16
        assert torch.equal(loaded[name], z.half())
    payload = 64 * (640 + 10) * 2  # N x sum(features) x 2 bytes
    assert payload < path.stat().st_size < payload + 350 * (len(reps) + 1)  # headers: ~300 bytes per array
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind

    save_representations(tmp_path, 0, reps, inputs)
    save_representations(tmp_path, 3, _representations(seed=1), inputs)  # a resumed run overwrites
    assert saved_epochs(tmp_path) == [0, 3]
    assert torch.equal(load_representations(tmp_path, 3)["head"], _representations(seed=1)["head"].half())
    with pytest.raises(FileNotFoundError, match=r"epoch 5 .* saved epochs are \[0, 3\]"):
        load_representations(tmp_path, 5)
    with pytest.raises(ValueError, match="reserved"):
        save_representations(tmp_path, 1, {"__probe_digest__": inputs}, inputs)


def test_float16_storage_changes_cka_by_little(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 100, generator=g, dtype=F64)
    y = x @ torch.randn(100, 50, generator=g, dtype=F64) + torch.randn(256, 50, generator=g, dtype=F64) * 5
    inputs = torch.randn(256, 3)
    save_representations(tmp_path / "a", 1, {"x": x}, inputs)
    save_representations(tmp_path / "b", 1, {"x": y}, inputs)
    assert cka_between_runs(tmp_path / "a", tmp_path / "b", 1)["x"] == pytest.approx(float(linear_cka(x, y)), abs=1e-3)


def test_runs_compared_layer_by_layer_only_on_the_same_probe_set(tmp_path):
    inputs = torch.randn(64, 1, 40)
    clean, deficit = _representations(0), _representations(1)
    deficit["head"] = 2.0 * clean["head"] + 0.1 * deficit["head"]
    save_representations(tmp_path / "clean", 4, clean, inputs)
    save_representations(tmp_path / "deficit", 4, deficit, inputs)
    similarity = cka_between_runs(tmp_path / "deficit", tmp_path / "clean", 4)
    assert list(similarity) == ["features.conv1", "head"]
    for layer, value in similarity.items():
        assert value == pytest.approx(float(linear_cka(deficit[layer].half(), clean[layer].half())), rel=1e-12)
    assert similarity["head"] > 0.95 and abs(similarity["features.conv1"]) < 0.1

    save_representations(tmp_path / "other_seed", 4, clean, inputs + 1)
    with pytest.raises(ValueError, match="different probe sets"):
        cka_between_runs(tmp_path / "other_seed", tmp_path / "clean", 4)


def test_layer_by_layer_matrix_within_a_run(tmp_path):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(40, 6, generator=g)
    reps = {"a": a, "b": a @ torch.randn(6, 4, generator=g), "c": torch.randn(40, 5, generator=g)}
    save_representations(tmp_path, 2, reps, torch.zeros(40, 2))
    layers, matrix = layer_cka_matrix(tmp_path, 2, debiased=False)
    assert layers == ["a", "b", "c"]
    np.testing.assert_allclose(matrix, matrix.T)
    np.testing.assert_allclose(np.diag(matrix), 1.0)
    stored = load_representations(tmp_path, 2)
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        assert matrix[i, j] == pytest.approx(float(linear_cka(stored[layers[i]], stored[layers[j]], debiased=False)))


# -- the per-run state a callback keeps --------------------------------------------------------------------


def test_probe_over_a_run_saves_on_schedule_and_a_resumed_run_logs_the_same_numbers(tmp_path):
    torch.manual_seed(0)
    model = _Odd().float()
    x, y = _probe_set()
    x = x.float()
    options = RepresentationOptions(save_every_n_epochs=2)

    def run(run_dir, model, epochs, resumed_at=None):
        probe = RepresentationProbe(options, run_dir, x, y, chunk_size=11)
        probe.start(model, resumed=resumed_at is not None)
        logged, outputs = {}, {}
        for epoch in range(resumed_at or 0, epochs + 1):
            if epoch > 0:
                _perturb(model, 0.1)  # stands in for an epoch of training
            logged[epoch] = probe.probe(model)
            outputs[epoch] = layer_representations(model, x)
            probe.save(epoch)
            assert probe.save(epoch) is None  # once per probe
        return logged, outputs

    initial_state = {k: v.clone() for k, v in model.state_dict().items()}
    uninterrupted, outputs = run(tmp_path / "a", model, 5)
    assert all(uninterrupted[0][cka_vs_init(layer)] == pytest.approx(1.0, abs=1e-12) for layer in ("first", "head"))
    assert saved_epochs(tmp_path / "a") == [0, 2, 4]
    assert load_representations(tmp_path / "a", 0)["first"].dtype == torch.float32  # the CKA reference
    assert torch.equal(load_representations(tmp_path / "a", 2)["first"], outputs[2]["first"].half())
    recomputed, _ = representation_metrics(model, x, y, options, None, chunk_size=11)  # the filter, not kept
    assert uninterrupted[5][FREQUENCY_ERROR_HIGH] == pytest.approx(recomputed[FREQUENCY_ERROR_HIGH], rel=1e-12)

    # the same run killed after epoch 3 and resumed: a fresh probe that only has the run folder
    model.load_state_dict(initial_state)
    run(tmp_path / "b", model, 3)
    resumed, _ = run(tmp_path / "b", model, 5, resumed_at=4)
    assert resumed[4] == uninterrupted[4] and resumed[5] == uninterrupted[5]
    assert saved_epochs(tmp_path / "b") == [0, 2, 4]


def test_probe_refuses_to_run_before_it_has_the_initial_representations(tmp_path):
    x, y = _probe_set()
    with pytest.raises(RuntimeError, match="before start"):
        RepresentationProbe(RepresentationOptions(), tmp_path, x, y).probe(_Odd().double())


def test_probe_without_cka_keeps_nothing_and_saves_only_when_asked(tmp_path):
    model = _Odd().double()
    x, y = _probe_set()
    probe = RepresentationProbe(RepresentationOptions(cka=False), tmp_path, x, y)
    probe.start(model, resumed=False)
    assert probe.initial is None
    assert set(probe.probe(model)) == {FREQUENCY_ERROR_LOW, FREQUENCY_ERROR_HIGH}
    assert probe.save(1) is None
    assert saved_epochs(tmp_path) == []


# -- end to end: the real training entry point with probes=representation ------------------------------------

_WIRED = "representation" in inspect.signature(ProbeCallback).parameters


@pytest.mark.skipif(not _WIRED, reason="ProbeCallback has no `representation` argument yet (the lead wires it)")
def test_training_with_probes_representation_logs_and_saves(make_cfg, tmp_path):
    from critical_periods.train import train

    train(make_cfg("probes=representation", "probes.representation.save_every_n_epochs=2",
                   "deficit.length=2", "schedule.epochs_after_deficit=1"))  # 3 epochs, at_start probe
    probed = [row for row in read_metrics(tmp_path) if FREQUENCY_ERROR_LOW in row]
    layers = ["features.fc1", "head"]  # model.widths=[32] in the tiny config
    assert [row[names.EPOCH] for row in probed] == [0, 0, 1, 2]  # the start, then each epoch's end
    assert all(row[cka_vs_init(layer)] == pytest.approx(1.0, abs=1e-9) for layer in layers for row in probed[:1])
    assert all(0.0 < row[cka_vs_init("head")] < 1.0 for row in probed[1:])
    assert all(row[FREQUENCY_ERROR_HIGH] > 0 for row in probed)
    assert saved_epochs(tmp_path) == [0, 2]
    assert list(load_representations(tmp_path, 2)) == layers
