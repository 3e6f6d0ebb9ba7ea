"""JSON-lines files: the one reader and writer of every ``*.jsonl`` file a run keeps.

A row is written as one flushed line, so a process killed mid-write (or a full disk) can leave at
most a torn last line. Readers skip such a line with a warning instead of failing; a resume trims it
(:func:`trim_rows`), so the file is whole again before anything is appended.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from critical_periods.record.atomic import write_text_atomic

log = logging.getLogger(__name__)

Row = dict[str, Any]


def plain(value: Any) -> Any:
    """A JSON-safe python value: tensors become numbers, NaN and inf become None."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def append_row(path: Path | str, row: Row) -> None:
    """Append ``row`` as one strict-JSON line (NaN refused before anything is written), flushed on close."""
    line = json.dumps(row, allow_nan=False) + "\n"
    with open(path, "a") as f:
        f.write(line)


def _parse(line: str) -> Row | None:
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return row if isinstance(row, dict) else None


def _lines(path: Path) -> list[tuple[str, Row | None]]:
    with open(path) as f:
        # A complete object whose newline was lost is kept, with its newline back.
        return [(line if line.endswith("\n") else line + "\n", _parse(line)) for line in f if line.strip()]


def read_rows(path: Path | str) -> list[Row]:
    """Every readable row of ``path`` (empty if it does not exist). Unreadable lines (torn by a kill or
    a full disk) are skipped with a warning naming the file.

    >>> import tempfile; p = Path(tempfile.mkdtemp()) / "x.jsonl"
    >>> append_row(p, {"a": 1}); _ = open(p, "a").write('{"a": 2')   # a torn last line
    >>> read_rows(p)
    [{'a': 1}]
    """
    rows, torn = read_rows_and_torn(path)
    if torn:
        log.warning("%s: skipped %d unreadable line(s) (cut short by a kill or a full disk)", path, torn)
    return rows


def read_rows_and_torn(path: Path | str) -> tuple[list[Row], int]:
    """The readable rows of ``path`` and how many unreadable lines were skipped (no warning)."""
    path = Path(path)
    if not path.exists():
        return [], 0
    parsed = _lines(path)
    return [row for _, row in parsed if row is not None], sum(row is None for _, row in parsed)


def trim_rows(path: Path | str, keep: Callable[[Row], bool]) -> int:
    """Rewrite ``path`` atomically with only its readable rows that ``keep`` accepts, byte for byte as
    they were; returns how many readable rows were dropped. Torn lines are dropped with a warning."""
    path = Path(path)
    if not path.exists():
        return 0
    parsed = _lines(path)
    torn = sum(row is None for _, row in parsed)
    if torn:
        log.warning("%s: dropped %d unreadable line(s) (cut short by a kill or a full disk)", path, torn)
    kept = [line for line, row in parsed if row is not None and keep(row)]
    write_text_atomic(path, "".join(kept))
    return len(parsed) - torn - len(kept)
