"""Zhang et al. 2017's deficits: random labels (a label per training example, drawn once per seed)
and shuffled pixels (one fixed permutation of input positions), by hand and in real training."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from critical_periods.data.datamodule import DeficitDataModule
from critical_periods.data.deficits import RandomLabels, ShuffledPixels, random_labels, shuffle_positions
from critical_periods.data.synthetic import load_synthetic
from critical_periods.models.mlp import MLP
from critical_periods.module import ClassifierModule
from critical_periods.record.metric_names import STIFFNESS_COS_DIFF, STIFFNESS_COS_SAME
from critical_periods.record.metrics import RunRecordLogger, read_metrics
from critical_periods.record.summary import read_summary
from critical_periods.schedule import LrFactor

from conftest import TINY, run_cli
from test_seeds import first, job_records, sweep

CLASSES = 4


def small_source():
    return load_synthetic(num_samples=300, test_samples=100, input_dim=12, num_classes=CLASSES, seed=0)


class SeenBatches(pl.Callback):
    """Every training and validation batch as the model receives it, by epoch."""

    def __init__(self):
        self.train, self.val = {}, {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.train.setdefault(trainer.current_epoch, []).append((batch[0].clone(), batch[1].clone()))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.val.setdefault((trainer.current_epoch, dataloader_idx), []).append(batch[0].clone())


def fit(tmp_path, deficit, epochs=4):
    datamodule = DeficitDataModule(small_source, deficit, batch_size=32, eval_batch_size=64, seed=0)
    datamodule.setup("fit")
    seen = SeenBatches()
    module = ClassifierModule(MLP(datamodule.input_shape, CLASSES, widths=[8]), CLASSES,
                              lambda p: torch.optim.SGD(p, lr=0.1), LrFactor())
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=RunRecordLogger(tmp_path), enable_progress_bar=False,
                         enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
                         log_every_n_steps=1, callbacks=[seen])
    trainer.fit(module, datamodule=datamodule)
    return datamodule, seen


def row_index(datamodule) -> dict[tuple, int]:
    return {tuple(row.flatten().tolist()): i for i, row in enumerate(datamodule.x_train)}


# -- random labels ------------------------------------------------------------------------------------

def test_random_labels_are_seeded_uniform_and_unrelated_to_the_true_labels():
    a, b, c = random_labels(3600, 10, seed=0), random_labels(3600, 10, seed=0), random_labels(3600, 10, seed=1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (a != c).float().mean().item() == pytest.approx(0.9, abs=0.03)  # two seeds agree by chance only
    counts = torch.bincount(a, minlength=10).double()
    # Pearson chi-square with 9 degrees of freedom; its 99.9% quantile is 27.9.
    chi2 = ((counts - 360) ** 2 / 360).sum().item()
    assert chi2 < 27.9 and counts.min() > 0
    true = torch.arange(3600) % 10
    assert (a == true).float().mean().item() == pytest.approx(0.1, abs=0.03)


def test_random_labels_keep_one_table_per_seed_whatever_the_call():
    first_draw, again, other = RandomLabels(seed=5), RandomLabels(seed=5), RandomLabels(seed=6)
    y = torch.zeros(200, dtype=torch.long)
    for d in (first_draw, again, other):
        d.bind((1, 12), num_classes=CLASSES)
    table = first_draw.training_labels(y)
    assert table is first_draw.training_labels(y)  # drawn once, not per epoch
    assert torch.equal(table, again.training_labels(y)) and not torch.equal(table, other.training_labels(y))
    x = torch.randn(3, 1, 12)
    batch_labels = y[:3]
    out_x, out_y = first_draw.transform(x, batch_labels)
    assert out_x is x and out_y is batch_labels  # the loader swaps labels; batches pass through


def test_random_labels_in_training_are_the_tables_inside_the_window_and_true_outside(tmp_path):
    deficit = RandomLabels(onset=1, length=2, seed=3)
    datamodule, seen = fit(tmp_path, deficit, epochs=4)
    index, table = row_index(datamodule), deficit.training_labels(datamodule.y_train)
    assert (table != datamodule.y_train).any()
    for epoch in range(4):
        expected = table if epoch in (1, 2) else datamodule.y_train
        for x, y in seen.train[epoch]:
            rows = [index[tuple(r.flatten().tolist())] for r in x]  # inputs stay clean
            assert y.tolist() == expected[rows].tolist(), epoch
    # No deficit view: held-out examples have no random label. Validation and test stay clean.
    assert {k for k in seen.val} == {(e, 0) for e in range(4)}
    assert "val/deficit_acc" not in {k for r in read_metrics(tmp_path) for k in r}
    # The probe set carries the labels the network is trained on.
    x_probe, y_probe = datamodule.probe_set(40, seed=0)
    assert y_probe.tolist() == [table[index[tuple(r.flatten().tolist())]].item() for r in x_probe]


# -- shuffled pixels ----------------------------------------------------------------------------------

def test_shuffle_positions_by_hand_on_signals_and_images():
    signal = torch.tensor([[[1.0, 2.0, 3.0, 4.0]], [[5.0, 6.0, 7.0, 8.0]]])  # (B=2, C=1, L=4)
    permutation = torch.tensor([3, 0, 2, 1])
    assert shuffle_positions(signal, permutation).tolist() == [[[4.0, 1.0, 3.0, 2.0]], [[8.0, 5.0, 7.0, 6.0]]]
    image = torch.arange(2 * 2 * 2.0).reshape(1, 2, 2, 2)  # channels [[0,1],[2,3]] and [[4,5],[6,7]]
    out = shuffle_positions(image, torch.tensor([3, 2, 1, 0]))  # the pixel order reversed, channels together
    assert out.tolist() == [[[[3.0, 2.0], [1.0, 0.0]], [[7.0, 6.0], [5.0, 4.0]]]]


def test_shuffled_pixels_draws_one_seeded_permutation_and_refuses_flat_inputs():
    a, b, c = ShuffledPixels(seed=2), ShuffledPixels(seed=2), ShuffledPixels(seed=3)
    for d in (a, b, c):
        d.bind((3, 4, 5), num_classes=10)
    assert sorted(a.permutation.tolist()) == list(range(20))
    assert torch.equal(a.permutation, b.permutation) and not torch.equal(a.permutation, c.permutation)
    with pytest.raises(ValueError, match="deficit=shuffled_pixels is not allowed for inputs of shape"):
        ShuffledPixels().bind((40,), num_classes=10)


def test_shuffled_pixels_in_training_permute_every_example_alike_only_in_the_window(tmp_path):
    deficit = ShuffledPixels(onset=1, length=2, seed=4)
    datamodule, seen = fit(tmp_path, deficit, epochs=4)
    index = row_index(datamodule)
    inverse = torch.argsort(deficit.permutation)
    assert not torch.equal(deficit.permutation, torch.arange(len(inverse)))
    for epoch in range(4):
        for x, y in seen.train[epoch]:
            clean = x if epoch in (0, 3) else x.flatten(2)[:, :, inverse].reshape(x.shape)
            rows = [index[tuple(r.flatten().tolist())] for r in clean]  # every row, unshuffled, is a training row
            assert y.tolist() == datamodule.y_train[rows].tolist()
    val_rows = {tuple(r.flatten().tolist()) for r in datamodule.x_val}
    for (epoch, loader), batches in seen.val.items():
        shuffled = loader == 1  # loader 0 is validation proper (clean), 1 the deficit view
        assert not shuffled or epoch in (1, 2)  # the view exists only in the window
        for x in batches:
            clean = x.flatten(2)[:, :, inverse].reshape(x.shape) if shuffled else x
            assert all(tuple(r.flatten().tolist()) in val_rows for r in clean)
    assert {key for key in seen.val if key[1] == 1} == {(1, 1), (2, 1)}


# -- real runs -----------------------------------------------------------------------------------------

# ~10 s each; shuffled pixels also trains for real in-process above, so its command run is slow-marked.
@pytest.mark.parametrize("kind", ["random_labels", pytest.param("shuffled_pixels", marks=pytest.mark.slow)])
def test_the_train_command_runs_each_deficit(tmp_path, kind):
    out = tmp_path / "run"
    done = run_cli(*TINY, f"deficit={kind}", f"paths.output_dir={out}", "probes=representation",
                   "probes.representation.cka=false", "probes.representation.frequency=false",
                   "probes.probe_size=64", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = read_summary(out)
    assert summary["status"] == "completed" and summary["deficit"] == kind
    keys = {k for r in read_metrics(out) for k in r}
    assert {STIFFNESS_COS_SAME, STIFFNESS_COS_DIFF} <= keys


@pytest.mark.slow  # two multiruns of three seeds, ~30 s
def test_the_seeds_launcher_keeps_each_seeds_random_labels(tmp_path):
    lone_dir, _ = sweep(tmp_path, "lone", "deficit=random_labels", seeds_launcher=False)
    group_dir, _ = sweep(tmp_path, "group", "deficit=random_labels", seeds_launcher=True)
    lone, group = job_records(lone_dir), job_records(group_dir)
    assert sorted(group) == sorted(lone) and len(lone) == 3
    for name in lone:
        for key in ("train/loss", "train/acc", "fisher/trace"):
            assert first(group[name]["rows"], key) == pytest.approx(first(lone[name]["rows"], key), rel=1e-3)
    # A seed that drew another seed's labels would show another first loss.
    assert len({first(g["rows"], "train/loss") for g in group.values()}) == 3
