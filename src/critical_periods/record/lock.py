"""One process per run folder: an OS lock on ``<run dir>/.lock``, held for the life of the run.

``fcntl.flock`` locks belong to the open file; the OS drops them when the process dies, however it
dies, so a killed run never leaves a stale claim. The holder writes ``pid host`` into the file so a
refused process can say who holds it. POSIX only (``fcntl``).
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from critical_periods.record.layout import LOCK_FILE


class RunFolderBusy(RuntimeError):
    """Another live process holds the run folder."""


class RunLock:
    """``with RunLock(run_dir): ...`` claims ``run_dir`` or raises :class:`RunFolderBusy` without
    writing anything into it (the lock file is created once, empty, by the first claimer)."""

    def __init__(self, run_dir: Path | str) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").split()
            os.close(fd)
            pid, host = (holder + ["?", "?"])[:2]
            raise RunFolderBusy(f"{self.path.parent} is held by pid {pid} on host {host}; not touching it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # nobody holds it now
            os.close(self._fd)  # closing drops the lock
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def is_held(run_dir: Path | str) -> bool | None:
    """Whether a live process holds ``run_dir`` now (``None``: the folder was never locked)."""
    path = Path(run_dir) / LOCK_FILE
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


class exclusive:
    """``with exclusive(path): ...`` waits for, then holds, an OS lock on ``path`` (created if needed):
    for short critical sections shared by processes (the sweep's branch points). Released on exit, or
    by the OS if the process dies."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def __enter__(self) -> exclusive:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
