"""Whole-file writes that readers never see half done (the run record, the stiffness matrices,
saved representations). No Lightning, no torch: anything may import it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    """``write(f)`` into a temporary file beside ``path``, then rename it over: readers never see half
    a file. The file gets the mode a plain ``open`` would give it (0666 less the umask), not mkstemp's 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """``text`` (UTF-8) replacing ``path`` whole (see :func:`write_atomic`)."""
    write_atomic(path, lambda f: f.write(text.encode()))
