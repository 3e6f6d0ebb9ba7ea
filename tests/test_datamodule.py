"""The DeficitDataModule: splits, normalisation, probe set, and the deficit window in a real Trainer."""

import pytorch_lightning as pl
import torch

from critical_periods.data.batches import TensorBatches
from critical_periods.data.datamodule import DeficitDataModule, stratified_pick
from critical_periods.data.deficits import VerticalFlip
from critical_periods.data.synthetic import load_synthetic
from critical_periods.record.metric_names import EPOCH, VAL_ACC, VAL_DEFICIT_ACC
from critical_periods.record.metrics import RunRecordLogger, read_metrics
from critical_periods.models.mlp import MLP
from critical_periods.module import ClassifierModule
from critical_periods.schedule import LrFactor


def small_source():
    return load_synthetic(num_samples=300, test_samples=100, input_dim=12, num_classes=3, seed=0)


class BatchKinds(pl.Callback):
    """Records, per epoch and loader, whether batches arrive clean or flipped (after the transfer)."""

    def __init__(self, datamodule):
        self.clean = {tuple(row.flatten().tolist()) for row in torch.cat([datamodule.x_train, datamodule.x_val])}
        self.seen = {}

    def _kind(self, x):
        rows = [tuple(r.flatten().tolist()) for r in x]
        flipped = [tuple(r.flip(-1).flatten().tolist()) for r in x]
        if all(r in self.clean for r in rows):
            return "clean"
        assert all(r in self.clean for r in flipped), "batch is neither clean nor flipped"
        return "flipped"

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.setdefault(("train", trainer.current_epoch), set()).add(self._kind(batch[0]))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.seen.setdefault((f"val{dataloader_idx}", trainer.current_epoch), set()).add(self._kind(batch[0]))


class BatchCount(pl.Callback):
    """Validation batches per (epoch, loader), counted where the model would see them."""

    def __init__(self):
        self.counts = {}

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        key = (trainer.current_epoch, dataloader_idx)
        self.counts[key] = self.counts.get(key, 0) + 1


def fit_with_flip_window(tmp_path, *callbacks, epochs=4, onset=1, length=2, val_batch=32):
    datamodule = DeficitDataModule(small_source, VerticalFlip(onset=onset, length=length), batch_size=32,
                                   eval_batch_size=val_batch, seed=0)
    datamodule.setup("fit")
    module = ClassifierModule(MLP(datamodule.input_shape, 3, widths=[8]), 3, lambda p: torch.optim.SGD(p, lr=0.1), LrFactor())
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=RunRecordLogger(tmp_path), enable_progress_bar=False,
                         enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0, log_every_n_steps=1,
                         callbacks=list(callbacks))
    trainer.fit(module, datamodule=datamodule)
    return datamodule, module, trainer


def test_deficit_is_applied_from_onset_up_to_but_not_at_onset_plus_length(tmp_path):
    datamodule = DeficitDataModule(small_source, seed=0)
    datamodule.setup()
    kinds = BatchKinds(datamodule)
    _, module, trainer = fit_with_flip_window(tmp_path, kinds)
    expected = {0: "clean", 1: "flipped", 2: "flipped", 3: "clean"}
    for epoch, kind in expected.items():
        assert kinds.seen[("train", epoch)] == {kind}, epoch
        assert kinds.seen[("val0", epoch)] == {"clean"}, epoch  # validation proper is always clean
        if kind == "flipped":
            assert kinds.seen[("val1", epoch)] == {"flipped"}, epoch  # the deficit view, inside the window
        else:
            assert ("val1", epoch) not in kinds.seen, epoch  # and nothing outside it
    trainer.test(module, datamodule=datamodule, verbose=False)
    assert "test/acc" in trainer.callback_metrics


def test_deficit_view_is_iterated_and_logged_only_inside_the_window(tmp_path):
    count = BatchCount()
    datamodule, _, _ = fit_with_flip_window(tmp_path, count, epochs=5, onset=1, length=2, val_batch=8)
    per_pass = -(-len(datamodule.x_val) // 8)
    assert per_pass > 1
    assert {epoch: count.counts.get((epoch, 0), 0) for epoch in range(5)} == {e: per_pass for e in range(5)}
    assert {epoch: count.counts.get((epoch, 1), 0) for epoch in range(5)} == {0: 0, 1: per_pass, 2: per_pass, 3: 0, 4: 0}
    rows = read_metrics(tmp_path)
    logged = lambda name: sorted(r[EPOCH] for r in rows if name in r)  # noqa: E731
    assert logged(VAL_ACC) == [0, 1, 2, 3, 4]
    assert logged(VAL_DEFICIT_ACC) == [1, 2]


def test_splits_are_seeded_disjoint_and_normalised_with_train_statistics():
    a = DeficitDataModule(small_source, seed=1)
    b = DeficitDataModule(small_source, seed=1)
    c = DeficitDataModule(small_source, seed=2)
    for dm in (a, b, c):
        dm.setup()
    assert torch.equal(a.x_val, b.x_val) and not torch.equal(a.x_val, c.x_val)
    assert len(a.x_train) + len(a.x_val) == 300 and len(a.x_test) == 100  # official test set kept whole
    train_rows = {tuple(r.tolist()) for r in a.x_train.flatten(1)}
    assert not any(tuple(r.tolist()) in train_rows for r in a.x_val.flatten(1))
    torch.testing.assert_close(a.x_train.mean(dim=(0, 2)), torch.zeros(1), atol=1e-5, rtol=0)
    torch.testing.assert_close(a.x_train.std(dim=(0, 2)), torch.ones(1), atol=1e-4, rtol=0)


def test_data_without_official_test_set_holds_one_out():
    def no_test():
        arrays = small_source()
        return type(arrays)(arrays.x_train, arrays.y_train, None, None, arrays.num_classes)

    dm = DeficitDataModule(no_test, test_fraction=0.2, val_fraction=0.1, seed=0)
    dm.setup()
    assert len(dm.x_test) == 60 and len(dm.x_val) == 24 and len(dm.x_train) == 216


def test_probe_set_is_stratified_and_seeded():
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 5)
    pick = stratified_pick(y, 12, seed=0)
    assert torch.bincount(y[pick], minlength=3).tolist() == [4, 4, 4]
    assert torch.equal(pick, stratified_pick(y, 12, seed=0))
    assert not torch.equal(pick, stratified_pick(y, 12, seed=1))
    few = stratified_pick(y, 21, seed=0)  # class 2 runs out after 5: the rest is shared evenly
    assert torch.bincount(y[few], minlength=3).tolist() == [8, 8, 5]
    assert len(set(few.tolist())) == 21


def test_batches_cover_every_example_once_in_a_seeded_per_epoch_order():
    x, y = torch.arange(10.0)[:, None, None], torch.arange(10)
    loader = TensorBatches(x, y, batch_size=4, shuffle=True, seed=0)
    assert len(loader) == 3
    first = torch.cat([b[1] for b in loader])
    assert sorted(first.tolist()) == list(range(10))
    assert torch.equal(first, torch.cat([b[1] for b in loader]))  # same epoch, same order
    loader.sampler.set_epoch(1)
    assert not torch.equal(first, torch.cat([b[1] for b in loader]))
    assert len(TensorBatches(x, y, batch_size=4, drop_last=True)) == 2
