"""A teacher-student task: Gaussian inputs labelled by a fixed random network."""

from __future__ import annotations

import torch

from critical_periods.config.validation import not_allowed
from critical_periods.data.arrays import DataArrays


def load_synthetic(
    num_samples: int = 4000,
    test_samples: int = 1000,
    input_dim: int = 32,
    num_classes: int = 10,
    teacher_width: int = 64,
    seed: int = 0,
) -> DataArrays:
    """A controllable task with known labels, for tests, smoke runs and experiments that need ground truth.

    Inputs are standard Gaussian, x (num_samples, 1, input_dim) and test (test_samples, 1, input_dim)
    float32. Labels are the argmax of a fixed random teacher, Linear(input_dim, teacher_width) -> tanh
    -> Linear(teacher_width, num_classes), whose output logits are standardised with the training
    inputs' statistics (part of the teacher, applied to both splits) so the classes come out roughly
    balanced. The labels are a deterministic function of x with no label noise, so a wide enough
    student can reach 100% accuracy; width, dimension and class count set the difficulty.

    Everything is drawn from a torch.Generator seeded with `seed`: the global torch RNG is untouched.
    test_samples=0 gives no test set (None).
    """
    if num_samples < 2:
        raise not_allowed("num_samples", num_samples, "a whole number >= 2 (the teacher is calibrated on them)")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(num_samples + test_samples, 1, input_dim, generator=g)
    w1 = torch.randn(input_dim, teacher_width, generator=g) / input_dim**0.5
    b1 = torch.randn(teacher_width, generator=g) * 0.1
    w2 = torch.randn(teacher_width, num_classes, generator=g) / teacher_width**0.5
    logits = torch.tanh(x.squeeze(1) @ w1 + b1) @ w2
    # Without this, a few classes with large logit variance would take most of the inputs.
    train_logits = logits[:num_samples]
    logits = (logits - train_logits.mean(0)) / train_logits.std(0)
    y = logits.argmax(1)
    has_test = test_samples > 0
    return DataArrays(
        x_train=x[:num_samples],
        y_train=y[:num_samples],
        x_test=x[num_samples:] if has_test else None,
        y_test=y[num_samples:] if has_test else None,
        num_classes=num_classes,
    )
