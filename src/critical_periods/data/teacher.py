"""Hu et al. (2020)'s synthetic task: Gaussian inputs labelled by the sign of a small erf teacher."""

from __future__ import annotations

import functools

import torch

from critical_periods.config.validation import not_allowed


@functools.lru_cache(maxsize=8)  # a sweep reloads the same set for every seed of a group
def teacher_tensors(
    num_samples: int, test_samples: int, input_dim: int, teacher_width: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """x_train (N, d), y_train (N,), x_test (M, d), y_test (M,): float64, labels in {-1, +1}.

    x ~ N(0, I_d); y = sign(f*(x)) with f*(x) = sum_k a_k erf(w_k . x / sqrt(d)), w_k ~ N(0, I_d),
    a_k ~ N(0, 1), k = 1..teacher_width. erf is odd and there is no bias, so f*(-x) = -f*(x) and
    the two classes are balanced in distribution. Drawn from a private torch.Generator (the global
    RNG is untouched). Callers must not modify the cached tensors.
    """
    for key, value, low in (("num_samples", num_samples, 2), ("input_dim", input_dim, 1),
                            ("teacher_width", teacher_width, 1), ("test_samples", test_samples, 0)):
        if not isinstance(value, int) or value < low:
            raise not_allowed(key, value, f"a whole number >= {low}")
    g = torch.Generator().manual_seed(int(seed))
    x = torch.randn(num_samples + test_samples, input_dim, generator=g, dtype=torch.float64)
    w = torch.randn(teacher_width, input_dim, generator=g, dtype=torch.float64)
    a = torch.randn(teacher_width, generator=g, dtype=torch.float64)
    f_star = torch.erf(x @ w.T / input_dim**0.5) @ a
    y = torch.where(f_star >= 0, 1.0, -1.0).to(torch.float64)
    return x[:num_samples], y[:num_samples], x[num_samples:], y[num_samples:]


def load_teacher(
    num_samples: int = 20000, test_samples: int = 2000, input_dim: int = 50, teacher_width: int = 5, seed: int = 0
):
    """The teacher task as the pipeline's DataArrays: x (N, 1, d) float32, two classes (0: y=-1, 1: y=+1).

    Hu et al.'s default: 20,000 train, 2,000 test, d = 50, a width-5 teacher. The data module
    splits its validation set off the training examples as for every other data set.
    """
    from critical_periods.data.arrays import DataArrays

    x, y, x_test, y_test = teacher_tensors(int(num_samples), int(test_samples), int(input_dim), int(teacher_width), int(seed))
    has_test = test_samples > 0
    return DataArrays(
        x_train=x.float().unsqueeze(1),
        y_train=(y > 0).long(),
        x_test=x_test.float().unsqueeze(1) if has_test else None,
        y_test=(y_test > 0).long() if has_test else None,
        num_classes=2,
    )
