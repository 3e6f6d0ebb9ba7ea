"""Each deficit against its definition, on hand-built tensors."""

import pytest
import torch

from critical_periods.data.deficits import (
    Blur, LabelPermutation, NoDeficit, Noise, VerticalFlip, blur, permute_labels, vertical_flip, white_noise,
)


def test_blur_1d_matches_hand_computed_area_then_linear():
    x = torch.tensor([[[1.0, 1, 1, 1, 3, 3, 3, 3]]])  # (B=1, C=1, L=8)
    # Area to 2 samples gives [1, 3]; linear back to 8 (half-pixel centres, edges clamped):
    expected = torch.tensor([[[1.0, 1, 1.25, 1.75, 2.25, 2.75, 3, 3]]])
    torch.testing.assert_close(blur(x, 2), expected)


def test_blur_2d_removes_a_checkerboard_and_keeps_a_constant():
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2
    x = checker.float().expand(2, 3, 8, 8)  # (B, C, H, W)
    # Every 2x2 area holds two ones and two zeros, so the 4x4 version is 0.5 everywhere.
    torch.testing.assert_close(blur(x, 4), torch.full((2, 3, 8, 8), 0.5))
    constant = torch.full((1, 1, 8, 8), 7.0)
    torch.testing.assert_close(blur(constant, 2), constant)


def test_blur_at_full_size_is_the_identity():
    x = torch.randn(4, 1, 40)
    torch.testing.assert_close(blur(x, 40), x)


def test_vertical_flip_reverses_rows_of_images_and_signals():
    image = torch.arange(2 * 3 * 4 * 5.0).reshape(2, 3, 4, 5)
    flipped = vertical_flip(image)
    for row in range(4):
        torch.testing.assert_close(flipped[:, :, row, :], image[:, :, 3 - row, :])
    signal = torch.tensor([[[1.0, 2.0, 3.0]]])
    torch.testing.assert_close(vertical_flip(signal), torch.tensor([[[3.0, 2.0, 1.0]]]))


def test_label_permutation_is_a_fixed_seeded_bijection():
    a, b, c = LabelPermutation(seed=3), LabelPermutation(seed=3), LabelPermutation(seed=4)
    for d in (a, b, c):
        d.bind((1, 40), num_classes=10)
    assert sorted(a.permutation.tolist()) == list(range(10))
    assert torch.equal(a.permutation, b.permutation)
    assert not torch.equal(a.permutation, c.permutation)
    y = torch.tensor([0, 1, 2, 9, 9])
    x = torch.randn(5, 1, 40)
    x_out, y_out = a.transform(x, y)
    assert torch.equal(x_out, x)
    assert y_out.tolist() == [a.permutation[i].item() for i in y.tolist()]
    assert torch.equal(permute_labels(y, a.permutation), y_out)


def test_noise_replaces_inputs_with_standard_white_noise_from_its_own_seed():
    torch.manual_seed(0)
    global_state = torch.get_rng_state()
    x = torch.full((2000, 1, 40), 5.0)
    first, second = Noise(seed=1), Noise(seed=1)
    first.bind((1, 40), 10)
    second.bind((1, 40), 10)
    noisy, _ = first.transform(x, torch.zeros(2000, dtype=torch.long))
    assert torch.equal(noisy, second.transform(x, torch.zeros(2000, dtype=torch.long))[0])
    assert abs(noisy.mean().item()) < 0.02 and abs(noisy.std().item() - 1.0) < 0.02
    assert torch.equal(torch.get_rng_state(), global_state)  # training's RNG stream untouched
    shifted = white_noise(x, torch.Generator().manual_seed(0), mean=2.0, std=3.0)
    assert abs(shifted.mean().item() - 2.0) < 0.05 and abs(shifted.std().item() - 3.0) < 0.05


@pytest.mark.parametrize("deficit", [Blur(onset=3, length=2), VerticalFlip(onset=3, length=2), Noise(onset=3, length=2)])
def test_window_is_onset_inclusive_and_end_exclusive(deficit):
    assert [deficit.active(e) for e in range(7)] == [False, False, False, True, True, False, False]
    assert deficit.end == 5


def test_no_deficit_is_never_active_but_keeps_its_window_for_the_schedule():
    control = NoDeficit(onset=0, length=10)
    assert not any(control.active(e) for e in range(20))
    assert control.end == 10


@pytest.mark.parametrize("key,kwargs", [("onset", {"onset": -1}), ("length", {"length": -2}), ("onset", {"onset": 1.5})])
def test_bad_window_names_the_key(key, kwargs):
    with pytest.raises(ValueError, match=f"deficit.{key}"):
        VerticalFlip(**kwargs)


def test_blur_size_is_checked_against_the_input_and_defaults_to_a_quarter():
    default = Blur()
    default.bind((3, 32, 32), 10)
    assert default.size == 8
    signal = Blur()
    signal.bind((1, 40), 10)
    assert signal.size == 10
    with pytest.raises(ValueError, match=r"deficit.size=64 .*between 1 and 32"):
        Blur(size=64).bind((3, 32, 32), 10)
