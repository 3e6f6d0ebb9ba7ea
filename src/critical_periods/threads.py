"""How many CPU threads torch uses, and what else changes float rounding besides the config."""

from __future__ import annotations

import os

import torch


def default_threads() -> int | None:
    """torch CPU threads when the config says ``threads: null``: the allocation under SLURM, one per
    job under submitit's local launcher (its jobs run at once), and otherwise one core fewer than
    torch would take (at most its default), so one other busy process never shares a core with a
    training thread. ``None``: leave torch alone (``OMP_NUM_THREADS`` is set).

    Why: torch's threads spin while they wait for each other; when another process holds one of
    their cores, every parallel operation waits for the scheduler. On a 2-core machine beside one
    busy process an epoch took 4.7x (MLP) and 6.5x (Conv1DNet) its idle time with 2 threads, and
    1.1x with 1 (README, Threads). Thread counts change float summation order, so the count is fixed
    for a run, never chosen from the machine's load."""
    if "SLURM_CPUS_PER_TASK" in os.environ:
        return int(os.environ["SLURM_CPUS_PER_TASK"])
    if os.environ.get("SUBMITIT_EXECUTOR") == "local":
        return 1
    if "OMP_NUM_THREADS" in os.environ:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(torch.get_num_threads(), cores - 1))


def set_threads(threads: int | None) -> None:
    """Cap torch's CPU threads at ``threads``, or :func:`default_threads` for ``None``."""
    if threads is None:
        threads = default_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))


def numerics_environment(accelerator: str) -> str:
    """What changes float rounding besides the config: the torch build, its CPU threads, the device."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() and accelerator != "cpu" else "cpu"
    return f"torch {torch.__version__}, {torch.get_num_threads()} threads, {device}"
