"""scikit-learn's bundled 8x8 handwritten digits (UCI optdigits test part): no download."""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits as _sklearn_load_digits

from critical_periods.data.arrays import DataArrays


def load_digits() -> DataArrays:
    """Digits: x (1797, 1, 8, 8) float32 with integer pixel counts in [0, 16] (raw scale), 10 classes.

    There is no official test split (x_test, y_test are None): the DataModule carves one out.
    """
    bunch = _sklearn_load_digits()
    return DataArrays(
        x_train=torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1),
        y_train=torch.as_tensor(bunch.target, dtype=torch.int64),
        x_test=None,
        y_test=None,
        num_classes=10,
    )
