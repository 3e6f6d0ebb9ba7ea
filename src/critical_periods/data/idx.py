"""MNIST and Fashion-MNIST from the standard IDX files (plain or gzipped), without torchvision."""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from critical_periods.data.arrays import DataArrays, MissingDataError, data_root, fetch

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# Third byte of the magic number -> element type; IDX data is big-endian.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

_MNIST_URLS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_FASHION_URLS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (gzipped when the name ends in .gz) into an array of its stored dtype and dims.

    Raises ValueError naming the file when the magic number, header or size is wrong.
    """
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise ValueError(f"{path}: corrupt gzip file ({err}); delete it and download it again") from err
    # Magic: two zero bytes, the dtype code, the number of dimensions.
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise ValueError(f"{path}: not an IDX file (magic number {raw[:4].hex() or 'missing'})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes, need {header})")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + math.prod(dims) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(
            f"{path}: {len(raw)} bytes, but the header {dims} promises {expected}; delete it and download it again"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(dims)


def _find(directory: Path, name: str) -> Path | None:
    """The plain file if present (faster to read), else its .gz."""
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _split(images_path: Path, labels_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One split as (N, 1, H, W) float32 raw pixels and (N,) int64 labels."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise ValueError(f"{images_path}: expected (N, H, W) images, got shape {images.shape}")
    if labels.shape != images.shape[:1]:
        raise ValueError(
            f"{labels_path}: expected ({len(images)},) labels to match {images_path}, got shape {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{labels_path}: labels outside 0..9")
    return torch.from_numpy(images.astype(np.float32)).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def _load(
    dataset: str, root: str | os.PathLike, subdir: str, torchvision_dir: str, urls: tuple[str, ...], download: bool
) -> DataArrays:
    root = data_root(root)
    searched = [root / subdir, root / torchvision_dir / "raw"]
    found = None
    for directory in searched:
        paths = [_find(directory, name) for name in FILES]
        if None not in paths:
            found = paths
            break
    if found is None and download:
        for name in FILES:
            if _find(searched[0], name) is None:
                fetch([url + name + ".gz" for url in urls], searched[0] / f"{name}.gz")
        found = [_find(searched[0], name) for name in FILES]
    if found is None:
        raise MissingDataError.for_files(dataset, searched, FILES, urls[0], also=" (each plain or .gz)")

    x_train, y_train = _split(found[0], found[1])
    x_test, y_test = _split(found[2], found[3])
    return DataArrays(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, num_classes=10)


def load_mnist(root: str | os.PathLike, download: bool = False) -> DataArrays:
    """MNIST: x (60000, 1, 28, 28) and test (10000, 1, 28, 28) float32 in [0, 255] (raw pixel values), 10 classes.

    Looks in `root/mnist/`, then torchvision's `root/MNIST/raw/`. With download=True, missing files
    are fetched into `root/mnist/`; without network this raises MissingDataError.
    """
    return _load("MNIST", root, "mnist", "MNIST", _MNIST_URLS, download)


def load_fashion_mnist(root: str | os.PathLike, download: bool = False) -> DataArrays:
    """Fashion-MNIST: same shapes, scale ([0, 255]) and layout as load_mnist, 10 classes.

    Looks in `root/fashion_mnist/`, then torchvision's `root/FashionMNIST/raw/`.
    """
    return _load("Fashion-MNIST", root, "fashion_mnist", "FashionMNIST", _FASHION_URLS, download)
