"""The array loaders, against small files written here in the real on-disk formats (no network)."""

import gzip
import io
import pickle
import random
import struct
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

import critical_periods.data.mnist1d as mnist1d_source
from critical_periods.data.arrays import DataArrays, MissingDataError
from critical_periods.data.cifar import load_cifar10, load_cifar100
from critical_periods.data.digits import load_digits
from critical_periods.data.idx import FILES, load_fashion_mnist, load_mnist
from critical_periods.data.mnist1d import load_mnist1d
from critical_periods.data.synthetic import load_synthetic


def write_idx_set(directory: Path, suffixes: tuple[str, ...] = ("", "", "", "")) -> list[np.ndarray]:
    """Write the four MNIST IDX files (3 train, 2 test examples) with the given suffixes ("" or ".gz")."""
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (3, 28, 28)), rng.integers(0, 10, 3),  # train images, labels
              rng.integers(0, 256, (2, 28, 28)), rng.integers(0, 10, 2)]  # test images, labels
    directory.mkdir(parents=True, exist_ok=True)
    for name, suffix, array in zip(FILES, suffixes, arrays):
        header = struct.pack(f">BBBB{array.ndim}I", 0, 0, 0x08, array.ndim, *array.shape)  # magic, then dims
        payload = header + array.astype(np.uint8).tobytes()
        (directory / (name + suffix)).write_bytes(gzip.compress(payload) if suffix == ".gz" else payload)
    return arrays


def write_cifar_batch(path: Path, seed: int, **labels: list[int]) -> np.ndarray:
    """Pickle a CIFAR batch dict (bytes keys, uint8 rows of 3072) and return its data."""
    data = np.random.default_rng(seed).integers(0, 256, (len(next(iter(labels.values()))), 3072), dtype=np.uint8)
    with path.open("wb") as f:
        pickle.dump({b"data": data, b"batch_label": b"test", **{k.encode(): v for k, v in labels.items()}}, f)
    return data


def test_mnist_round_trips_plain_and_gzipped_idx(tmp_path):
    arrays = write_idx_set(tmp_path / "mnist", suffixes=("", ".gz", ".gz", ""))
    data = load_mnist(tmp_path)
    assert data.x_train.shape == (3, 1, 28, 28) and data.x_test.shape == (2, 1, 28, 28)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64 and data.num_classes == 10
    assert torch.equal(data.x_train[:, 0], torch.tensor(arrays[0], dtype=torch.float32))
    assert torch.equal(data.y_train, torch.tensor(arrays[1]))
    assert torch.equal(data.x_test[:, 0], torch.tensor(arrays[2], dtype=torch.float32))
    assert torch.equal(data.y_test, torch.tensor(arrays[3]))


@pytest.mark.parametrize("root", ["~/data", "data"])
def test_fashion_mnist_found_in_torchvision_layout_under_user_and_relative_roots(tmp_path, monkeypatch, root):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    arrays = write_idx_set(tmp_path / "data" / "FashionMNIST" / "raw", suffixes=(".gz",) * 4)
    assert torch.equal(load_fashion_mnist(root).y_test, torch.tensor(arrays[3]))


def test_missing_idx_file_error_names_directory_and_file(tmp_path):
    write_idx_set(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(MissingDataError) as err:
        load_mnist(tmp_path)
    assert str(tmp_path.resolve() / "mnist") in str(err.value) and "t10k-labels-idx1-ubyte" in str(err.value)


@pytest.mark.parametrize(
    "corrupt", [lambda raw: b"PK\x03\x04" + raw[4:], lambda raw: raw[:-1]], ids=["magic", "truncated"]
)
def test_corrupt_idx_raises_value_error_naming_the_file(tmp_path, corrupt):
    write_idx_set(tmp_path / "mnist")
    bad = tmp_path / "mnist" / "train-images-idx3-ubyte"
    bad.write_bytes(corrupt(bad.read_bytes()))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte"):
        load_mnist(tmp_path)


@pytest.mark.parametrize("loader", [load_mnist, load_fashion_mnist, load_cifar10, load_cifar100])
def test_download_without_network_raises_missing_data_error(tmp_path, monkeypatch, loader):
    calls = []

    def offline(request, timeout=None):
        calls.append(request)
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(MissingDataError, match="no network") as err:
        loader(tmp_path, download=True)
    assert calls, "download=True must try the network"
    assert str(tmp_path.resolve()) in str(err.value)
    assert not list(tmp_path.rglob("*.part")), "a failed download must not leave partial files"


def test_download_fetches_missing_idx_files_into_root(tmp_path, monkeypatch):
    served = tmp_path / "mirror"
    arrays = write_idx_set(served, suffixes=(".gz",) * 4)

    def mirror(request, timeout=None):  # answers each URL with the served file of the same name
        return io.BytesIO((served / request.full_url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.setattr(urllib.request, "urlopen", mirror)
    data = load_mnist(tmp_path / "root", download=True)
    assert torch.equal(data.x_test[:, 0], torch.tensor(arrays[2], dtype=torch.float32))
    assert sorted(p.name for p in (tmp_path / "root" / "mnist").iterdir()) == sorted(f"{name}.gz" for name in FILES)


def test_cifar10_round_trips_batches_in_order(tmp_path):
    directory = tmp_path / "cifar-10-batches-py"
    directory.mkdir()
    train = [write_cifar_batch(directory / f"data_batch_{i}", i, labels=[i, (i + 1) % 10]) for i in range(1, 6)]
    test = write_cifar_batch(directory / "test_batch", 0, labels=[9, 8, 7])
    data = load_cifar10(tmp_path)
    assert data.x_train.shape == (10, 3, 32, 32) and data.x_test.shape == (3, 3, 32, 32)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64 and data.num_classes == 10
    # Rows are whole R, G, B planes: flattening (C, H, W) back must give the rows exactly.
    assert torch.equal(data.x_train.flatten(1), torch.from_numpy(np.concatenate(train)).float())
    assert torch.equal(data.x_test.flatten(1), torch.from_numpy(test).float())
    assert data.y_train.tolist() == [1, 2, 2, 3, 3, 4, 4, 5, 5, 6] and data.y_test.tolist() == [9, 8, 7]


def test_cifar100_extracted_from_official_archive_with_fine_labels(tmp_path):
    source = tmp_path / "source" / "cifar-100-python"
    source.mkdir(parents=True)
    train = write_cifar_batch(source / "train", 1, fine_labels=[99, 0, 42], coarse_labels=[19, 0, 5])
    write_cifar_batch(source / "test", 2, fine_labels=[7], coarse_labels=[1])
    root = tmp_path / "root"
    root.mkdir()
    with tarfile.open(root / "cifar-100-python.tar.gz", "w:gz") as tar:
        tar.add(source, arcname="cifar-100-python")
    data = load_cifar100(root)
    assert (root / "cifar-100-python" / "train").is_file()
    assert data.num_classes == 100 and data.y_train.tolist() == [99, 0, 42] and data.y_test.tolist() == [7]
    assert torch.equal(data.x_train.flatten(1), torch.from_numpy(train).float())


@pytest.mark.parametrize("member", ["../evil", "/evil"], ids=["dotdot", "absolute"])
def test_unsafe_archive_member_is_refused(tmp_path, member):
    root = tmp_path / "root"
    root.mkdir()
    name = str(tmp_path / "evil") if member == "/evil" else member
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ValueError, match="unsafe"):
        load_cifar10(root)
    assert not (tmp_path / "evil").exists()


def test_missing_cifar_error_names_directory_files_and_archive(tmp_path):
    with pytest.raises(MissingDataError) as err:
        load_cifar10(tmp_path)
    message = str(err.value)
    assert str(tmp_path.resolve() / "cifar-10-batches-py") in message
    assert "data_batch_1" in message and "test_batch" in message and "cifar-10-python.tar.gz" in message


def test_mnist1d_shapes_determinism_and_caller_rng_untouched():
    mnist1d_source._generate.cache_clear()  # so the call below really generates
    random.seed(123)
    np.random.seed(123)
    expected = (random.random(), np.random.rand())
    random.seed(123)
    np.random.seed(123)
    data = load_mnist1d(num_samples=200, seed=3)
    assert (random.random(), np.random.rand()) == expected
    assert data.x_train.shape == (160, 1, 40) and data.x_test.shape == (40, 1, 40)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64 and data.num_classes == 10

    assert load_mnist1d(num_samples=200, seed=3) is data  # cached
    mnist1d_source._generate.cache_clear()
    again = load_mnist1d(num_samples=200, seed=3)
    assert again is not data and torch.equal(again.x_train, data.x_train) and torch.equal(again.y_test, data.y_test)
    assert not torch.equal(load_mnist1d(num_samples=200, seed=4).x_train, data.x_train)


def test_digits_shapes_and_raw_scale():
    data = load_digits()
    assert data.x_train.shape == (1797, 1, 8, 8) and data.x_train.dtype == torch.float32
    assert data.x_train.min() == 0 and data.x_train.max() == 16
    assert data.y_train.dtype == torch.int64 and data.y_train.unique().tolist() == list(range(10))
    assert data.x_test is None and data.y_test is None and data.num_classes == 10


def test_synthetic_is_deterministic_covers_all_classes_and_leaves_torch_rng_alone():
    kwargs = dict(num_samples=500, test_samples=100, input_dim=8, num_classes=5, teacher_width=16)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    data = load_synthetic(**kwargs, seed=1)
    assert torch.equal(torch.rand(3), expected)

    assert data.x_train.shape == (500, 1, 8) and data.x_test.shape == (100, 1, 8) and data.num_classes == 5
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert torch.bincount(data.y_train, minlength=5).min() > 0 and torch.bincount(data.y_test, minlength=5).min() > 0
    again, other = load_synthetic(**kwargs, seed=1), load_synthetic(**kwargs, seed=2)
    assert torch.equal(again.x_train, data.x_train) and torch.equal(again.y_test, data.y_test)
    assert not torch.equal(other.y_train, data.y_train)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(x_train=torch.zeros(4, 8)), "shape"),
        (dict(x_train=torch.zeros(4, 1, 8, dtype=torch.float64)), "float32"),
        (dict(y_train=torch.zeros(4, dtype=torch.int32)), "int64"),
        (dict(y_train=torch.zeros(3, dtype=torch.int64)), "same number"),
        (dict(y_train=torch.full((4,), 10)), "outside"),
        (dict(y_test=None), "both"),
        (dict(x_test=torch.zeros(2, 1, 9)), "x_test examples"),
    ],
)
def test_data_arrays_rejects_inconsistent_inputs(change, message):
    good = dict(
        x_train=torch.zeros(4, 1, 8), y_train=torch.zeros(4, dtype=torch.int64),
        x_test=torch.zeros(2, 1, 8), y_test=torch.zeros(2, dtype=torch.int64), num_classes=10,
    )
    DataArrays(**good)  # the baseline is valid, so each failure below is the change's doing
    with pytest.raises(ValueError, match=message):
        DataArrays(**{**good, **change})
