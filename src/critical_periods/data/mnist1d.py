"""MNIST-1D (Greydanus 2020), generated locally from its templates: no download."""

from __future__ import annotations

import functools
import random

import numpy as np
import torch

from critical_periods.config.validation import not_allowed
from critical_periods.data.arrays import DataArrays


def load_mnist1d(
    num_samples: int = 5000, seed: int = 42, train_split: float = 0.8, final_seq_length: int = 40
) -> DataArrays:
    """MNIST-1D: x (N_train, 1, final_seq_length) and test (N_test, 1, final_seq_length) float32, 10 classes.

    N = (num_samples // 10) * 10 examples, the first `train_split` of them for training. The scale is
    the generator's own (the whole set centred to mean 0, std 1); nothing else is normalised. The
    defaults give the standard 4000/1000 split of the published data set.

    Results are cached in-process per argument set, so callers must not modify the tensors.
    The global `random` and `numpy` RNG states are left exactly as they were.
    """
    if num_samples < 10:
        raise not_allowed("num_samples", num_samples, "a whole number >= 10 (one per class)")
    if not 0.0 < train_split < 1.0:
        raise not_allowed("train_split", train_split, "a number strictly between 0 and 1")
    return _generate(int(num_samples), int(seed), float(train_split), int(final_seq_length))


@functools.lru_cache(maxsize=8)  # generation takes ~1 s for 5000 examples; sweeps reload the same set often
def _generate(num_samples: int, seed: int, train_split: float, final_seq_length: int) -> DataArrays:
    from mnist1d.data import get_dataset_args, make_dataset  # imports matplotlib: only pay when used

    args = get_dataset_args(as_dict=False)
    args.num_samples, args.seed = num_samples, seed
    args.train_split, args.final_seq_length = train_split, final_seq_length
    # make_dataset reseeds the global random and numpy generators; put the caller's streams back.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return DataArrays(
        x_train=torch.from_numpy(data["x"].astype(np.float32)).unsqueeze(1),
        y_train=torch.from_numpy(data["y"].astype(np.int64)),
        x_test=torch.from_numpy(data["x_test"].astype(np.float32)).unsqueeze(1),
        y_test=torch.from_numpy(data["y_test"].astype(np.int64)),
        num_classes=10,
    )
