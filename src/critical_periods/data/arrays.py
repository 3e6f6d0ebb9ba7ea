"""What every array loader returns, the error it raises when files are missing, and how it fetches them.

Loaders (one module per data source) hand back raw-scale tensors; normalisation, splitting and
deficits belong to the DataModule, so a loader never needs to know about training.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataArrays:
    """A data set as tensors, in memory.

    x_train: float32, (N, C, L) for 1-D signals or (N, C, H, W) for images, raw scale (not normalised).
    y_train: int64, (N,), values in [0, num_classes).
    x_test, y_test: the official test set, same layout (M examples), or both None when the data set has none.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor | None
    y_test: torch.Tensor | None
    num_classes: int

    def __post_init__(self) -> None:
        if not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {self.num_classes!r}")
        if (self.x_test is None) != (self.y_test is None):
            raise ValueError("x_test and y_test must be both given or both None")
        self._check_split("train", self.x_train, self.y_train)
        if self.x_test is not None:
            self._check_split("test", self.x_test, self.y_test)
            if self.x_test.shape[1:] != self.x_train.shape[1:]:
                raise ValueError(
                    f"x_test examples have shape {tuple(self.x_test.shape[1:])}, "
                    f"x_train examples {tuple(self.x_train.shape[1:])}"
                )

    def _check_split(self, split: str, x: object, y: object) -> None:
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise ValueError(
                f"x_{split} and y_{split} must be torch.Tensors, got {type(x).__name__}, {type(y).__name__}"
            )
        if x.dtype != torch.float32:
            raise ValueError(f"x_{split} must be float32, got {x.dtype}")
        if x.ndim not in (3, 4):
            raise ValueError(f"x_{split} must be (N, C, L) or (N, C, H, W), got shape {tuple(x.shape)}")
        if y.dtype != torch.int64 or y.ndim != 1:
            raise ValueError(f"y_{split} must be int64 of shape (N,), got {y.dtype} {tuple(y.shape)}")
        if len(x) != len(y) or len(y) == 0:
            raise ValueError(
                f"x_{split} has {len(x)} examples and y_{split} {len(y)}; need the same number, at least 1"
            )
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= self.num_classes:
            raise ValueError(f"y_{split} spans [{low}, {high}], outside [0, {self.num_classes}) = range(num_classes)")


def data_root(root: str | os.PathLike) -> Path:
    """``root`` as an absolute path; a ``ValueError`` naming it if it exists but is not a folder."""
    path = Path(root).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise ValueError(
            f"{path} is not a directory: paths.data_dir (or CRITICAL_PERIODS_DATA_DIR) must name the folder "
            f"that holds the data sets"
        )
    return path


class MissingDataError(FileNotFoundError):
    """Raised when a data set's files are not on disk (and could not be downloaded)."""

    @classmethod
    def for_files(
        cls, dataset: str, searched: Sequence[Path], files: Sequence[str], url: str,
        also: str = "", into: Path | None = None,
    ) -> MissingDataError:
        """Build the error from what was looked for, where, and where to get it.

        `into` is where a manual download goes (default: the first directory searched). The message
        is the whole explanation (the args stay a single string so the error pickles
        across Hydra launcher processes).
        """
        where = " or ".join(str(d) for d in searched)
        return cls(
            f"{dataset} not found: looked in {where} for {', '.join(files)}{also}. "
            f"Download from {url} into {into or searched[0]}, "
            f"or set data.source.download=true on a machine with network access."
        )


def fetch(urls: Sequence[str], dest: Path, timeout: float = 30.0) -> None:
    """Download the first of `urls` that answers to `dest`, atomically (no half-written file is left).

    Raises MissingDataError naming `dest` and every URL tried when none answers (no network, a
    firewall, a dead mirror).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        log.info("downloading %s -> %s", url, dest)
        # A unique temporary name: concurrent sweep jobs may fetch the same file at once.
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        try:
            # Some mirrors refuse urllib's default user agent.
            request = urllib.request.Request(url, headers={"User-Agent": "Mozilla/5.0"})
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
                shutil.copyfileobj(response, out)
            os.replace(tmp, dest)
            return
        except OSError as err:  # URLError, HTTPError, timeouts and resets are all OSErrors
            errors.append(f"{url}: {err}")
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    raise MissingDataError(
        f"Could not download {dest.name} ({'; '.join(errors)}). If this machine has no network, "
        f"download it by hand from {urls[0]} and put it in {dest.parent}."
    )
