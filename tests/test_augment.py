"""Crop-and-flip augmentation: against a per-pixel loop, its statistics, its seeding, and where the
data module applies it (training batches only, before the deficit, reproducible across a resume)."""

import pytest
import pytorch_lightning as pl
import torch

from critical_periods.data.arrays import DataArrays
from critical_periods.data.augment import batch_generator, crop_flip, flip_lr, translate
from critical_periods.data.datamodule import DeficitDataModule
from critical_periods.data.deficits import VerticalFlip
from critical_periods.data.synthetic import load_synthetic
from critical_periods.models.cnn import SimpleCNN
from critical_periods.module import ClassifierModule
from critical_periods.schedule import LrFactor


def translate_by_loop(x, dy, dx, pad):
    out = torch.zeros_like(x)
    batch, channels, height, width = x.shape
    for b in range(batch):
        for i in range(height):
            for j in range(width):
                si, sj = i + int(dy[b]), j + int(dx[b])
                if 0 <= si < height and 0 <= sj < width:
                    out[b, :, i, j] = x[b, :, si, sj]
    return out


def test_translate_matches_a_per_pixel_loop_on_a_non_square_image():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(7, 2, 5, 6, generator=generator)
    dy, dx = torch.randint(-2, 3, (2, 7), generator=generator)
    torch.testing.assert_close(translate(x, dy, dx, pad=2), translate_by_loop(x, dy, dx, 2), rtol=0, atol=0)
    flips = torch.tensor([True, False, True, True, False, False, True])
    expected = torch.stack([img.flip(-1) if f else img for img, f in zip(x, flips)])
    torch.testing.assert_close(flip_lr(x, flips), expected, rtol=0, atol=0)


def coded_images(batch, size=32):
    """Every pixel holds 1 + its flat position, so a crop tells where it came from (0 = padding)."""
    return (1.0 + torch.arange(size * size, dtype=torch.float32)).reshape(1, 1, size, size).repeat(batch, 3, 1, 1)


def recovered_offsets(out, size=32):
    """(dy, dx, flipped) per example, read off the centre of crops of :func:`coded_images`."""
    centre = out[:, 0, size // 2, size // 2].long() - 1
    flipped = out[:, 0, size // 2, size // 2 + 1] < out[:, 0, size // 2, size // 2]
    row, col = centre // size, centre % size
    # Unflipped, output column c reads column c + dx; flipped, it reads (size - 1 - c) + dx.
    source_col = torch.where(flipped, torch.full_like(col, size - 1 - size // 2), torch.full_like(col, size // 2))
    return row - size // 2, col - source_col, flipped


def test_flip_rate_is_a_half_offsets_are_uniform_and_content_is_only_moved():
    n = 9000
    x = coded_images(n)
    out = crop_flip(x, torch.Generator().manual_seed(1), pad=4)
    dy, dx, flipped = recovered_offsets(out)
    # Binomial(9000, 1/2) has sd 47: 0.5 +- 0.025 is over 5 sd.
    assert abs(flipped.float().mean().item() - 0.5) < 0.025
    for shift in (dy, dx):
        counts = torch.bincount(shift + 4, minlength=9)
        assert len(counts) == 9  # nothing outside -4..4
        # 1000 expected per offset, sd about 31: every count within 5 sd.
        assert ((counts - 1000).abs() < 160).all(), counts.tolist()
    # Each output is exactly the translated (and possibly mirrored) input, with zeros where padding shows.
    expected = flip_lr(translate_by_loop(x[:50], dy[:50], dx[:50], 4), flipped[:50])
    torch.testing.assert_close(out[:50], expected, rtol=0, atol=0)
    # Every channel moves together.
    torch.testing.assert_close(out[:, 0], out[:, 2], rtol=0, atol=0)


def test_draws_depend_on_seed_epoch_and_batch_index_only():
    x = coded_images(64)
    draw = lambda *key: crop_flip(x, batch_generator(*key))  # noqa: E731
    torch.manual_seed(123)
    first = draw(0, 3, 5)
    torch.manual_seed(456)  # the global RNG plays no part
    assert torch.equal(first, draw(0, 3, 5))
    for other in [(0, 4, 5), (0, 3, 6), (1, 3, 5)]:
        assert not torch.equal(first, draw(*other)), other


def test_one_dimensional_inputs_are_refused_naming_the_config_key():
    source = lambda: load_synthetic(num_samples=100, test_samples=20, input_dim=8, num_classes=3)  # noqa: E731
    with pytest.raises(ValueError, match=r"^data\.augment=true is not allowed for inputs of shape \(1, 8\)"):
        DeficitDataModule(source, augment=True).setup()
    with pytest.raises(ValueError, match=r"data\.augment='yes' is not allowed"):
        DeficitDataModule(source, augment="yes")


def small_images():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(160, 3, 8, 8, generator=generator) * 255
    y = torch.arange(160) % 4
    return DataArrays(x[:120], y[:120], x[120:], y[120:], num_classes=4)


class Batches(pl.Callback):
    """The batches the model sees (after transfer, augmentation and deficit), per stage and epoch."""

    def __init__(self):
        self.train, self.val = {}, {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.train.setdefault(trainer.current_epoch, []).append(batch[0].clone())

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.val.setdefault((trainer.current_epoch, dataloader_idx), []).append(batch[0].clone())


def fit(epochs, deficit=None, ckpt_path=None, default_root_dir=None):
    datamodule = DeficitDataModule(small_images, deficit, batch_size=32, eval_batch_size=64, seed=3, augment=True)
    datamodule.setup()
    torch.manual_seed(0)
    module = ClassifierModule(SimpleCNN((3, 8, 8), 4, channels=[4], hidden=8), 4,
                              lambda p: torch.optim.SGD(p, lr=0.1), LrFactor())
    batches = Batches()
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, callbacks=[batches],
                         default_root_dir=default_root_dir, enable_checkpointing=default_root_dir is not None)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    return datamodule, batches, trainer


def test_training_batches_are_augmented_reproducibly_and_evaluation_stays_clean():
    datamodule, batches, _ = fit(2)
    _, again, _ = fit(2)
    for epoch in (0, 1):
        assert all(torch.equal(a, b) for a, b in zip(batches.train[epoch], again.train[epoch]))
    clean = {tuple(r.flatten().tolist()) for r in datamodule.x_train}
    seen = [tuple(r.flatten().tolist()) for b in batches.train[0] for r in b]
    assert sum(r in clean for r in seen) < len(seen) / 4  # most are moved (a zero shift without flip is 1/162)
    assert torch.equal(torch.cat(batches.val[(0, 0)]), datamodule.x_val)  # validation: clean, in order
    x_probe, _ = datamodule.probe_set(16, seed=0)
    assert all(tuple(r.flatten().tolist()) in clean for r in x_probe)


def test_augmentation_runs_before_the_deficit():
    _, plain, _ = fit(1)
    _, flipped, _ = fit(1, deficit=VerticalFlip(onset=0, length=1))
    for a, b in zip(plain.train[0], flipped.train[0]):
        assert torch.equal(b, a.flip(2))  # the upside-down image of the same crop


def test_a_run_resumed_at_an_epoch_boundary_sees_the_same_augmented_batches(tmp_path):
    _, whole, _ = fit(2)
    _, _, first = fit(1, default_root_dir=tmp_path)
    checkpoint = next(tmp_path.rglob("*.ckpt"))
    _, resumed, _ = fit(2, ckpt_path=str(checkpoint), default_root_dir=tmp_path / "resumed")
    assert list(resumed.train) == [1]
    assert all(torch.equal(a, b) for a, b in zip(whole.train[1], resumed.train[1]))
