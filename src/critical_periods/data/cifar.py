"""CIFAR-10 and CIFAR-100 from the official "python version" pickles, without torchvision."""

from __future__ import annotations

import os
import pickle
import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch

from critical_periods.data.arrays import DataArrays, MissingDataError, data_root, fetch

_URL = "https://www.cs.toronto.edu/~kriz/"


class _ArrayUnpickler(pickle.Unpickler):
    """Loads only what CIFAR batches hold (dicts, lists, bytes, numpy arrays): a tampered file cannot run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes at pickle protocol 2
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_batch(path: Path, label_key: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    """One pickled batch as (N, 3, 32, 32) float32 raw pixels and (N,) int64 labels."""
    try:
        with path.open("rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise ValueError(
            f"{path}: not a CIFAR batch pickle ({err}); delete it and unpack the official archive again"
        ) from err
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        raise ValueError(f"{path}: expected a dict with keys b'data' and {label_key!r}")
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != data.shape[:1]:
        raise ValueError(
            f"{path}: expected uint8 data (N, 3072) and N labels, got {data.dtype} {data.shape}, labels {labels.shape}"
        )
    # Rows are the red, green and blue 32x32 planes in turn, i.e. channel-first.
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).astype(np.float32))
    return images, torch.from_numpy(labels.astype(np.int64))


def _extract(archive: Path, root: Path) -> None:
    """Extract the official archive into root, refusing members that could land outside it."""
    try:
        tar = tarfile.open(archive, "r:gz")
        members = tar.getmembers()
    except (tarfile.TarError, OSError, EOFError) as err:  # e.g. an interrupted manual download
        raise ValueError(f"{archive}: corrupt archive ({err}); delete it and download it again") from err
    with tar:
        for member in members:
            parts = Path(member.name).parts
            if Path(member.name).is_absolute() or ".." in parts or not (member.isfile() or member.isdir()):
                raise ValueError(f"{archive}: refusing unsafe archive member {member.name!r}")
        # Extract beside the target, then rename: an interrupted or concurrent extraction never leaves a half directory.
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{archive.name}."))
        try:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, members=members, filter="data")
            else:
                tar.extractall(tmp, members=members)
            for top in tmp.iterdir():
                try:
                    os.replace(top, root / top.name)
                except OSError:
                    if not (root / top.name).exists():  # otherwise another job got there first: keep theirs
                        raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _load(
    dataset: str, root: str | os.PathLike, dirname: str, archive_name: str,
    files: list[str], label_key: bytes, num_classes: int, download: bool,
) -> DataArrays:
    """Load `root/dirname/<files>`; the last of `files` is the test split, the others the training split in order."""
    root = data_root(root)
    directory, archive = root / dirname, root / archive_name
    if not directory.is_dir():
        if not archive.is_file() and download:
            fetch([_URL + archive_name], archive)
        if archive.is_file():
            _extract(archive, root)
    missing = [name for name in files if not (directory / name).is_file()]
    if missing:
        raise MissingDataError.for_files(
            dataset, [directory], missing, _URL + archive_name,
            also=f" (or the archive {archive_name} in {root}, which is extracted automatically)", into=root,
        )
    train = [_read_batch(directory / name, label_key) for name in files[:-1]]
    x_test, y_test = _read_batch(directory / files[-1], label_key)
    return DataArrays(
        x_train=torch.cat([x for x, _ in train]),
        y_train=torch.cat([y for _, y in train]),
        x_test=x_test,
        y_test=y_test,
        num_classes=num_classes,
    )


def load_cifar10(root: str | os.PathLike, download: bool = False) -> DataArrays:
    """CIFAR-10: x (50000, 3, 32, 32) and test (10000, 3, 32, 32) float32 in [0, 255] (raw pixels), 10 classes.

    Reads `root/cifar-10-batches-py/` (data_batch_1..5, test_batch), extracting
    `root/cifar-10-python.tar.gz` first if only the archive is there; download=True fetches the archive.
    """
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    return _load("CIFAR-10", root, "cifar-10-batches-py", "cifar-10-python.tar.gz", files, b"labels", 10, download)


def load_cifar100(root: str | os.PathLike, download: bool = False) -> DataArrays:
    """CIFAR-100 (fine labels): same shapes and scale as load_cifar10, 100 classes.

    Reads `root/cifar-100-python/` (train, test), extracting `root/cifar-100-python.tar.gz` if needed.
    """
    files = ["train", "test"]
    return _load("CIFAR-100", root, "cifar-100-python", "cifar-100-python.tar.gz", files, b"fine_labels", 100, download)
