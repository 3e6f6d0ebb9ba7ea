"""Checks of the composed config that need no data: each bad value is a :class:`ConfigError` whose
one-line message names the key, the value and what is allowed, raised before the run folder is
claimed (so nothing is left behind that would block a corrected re-run)."""

from __future__ import annotations

import math
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """A config value that is not allowed. ``str(error)`` is the whole message, one line."""


def not_allowed(key: str, value: Any, allowed: str) -> ConfigError:
    """The one-line error for ``key=value``.

    >>> str(not_allowed("seed", -1, "a whole number >= 0"))
    'seed=-1 is not allowed: it must be a whole number >= 0'
    """
    return ConfigError(f"{key}={value!r} is not allowed: it must be {allowed}")


def _get(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, default=None)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_int(cfg: DictConfig, key: str, low: int, optional: bool = False) -> None:
    value = _get(cfg, key)
    if optional and value is None:
        return
    if not _is_int(value) or value < low:
        raise not_allowed(key, value, f"a whole number >= {low}" + (" or null" if optional else ""))


def check_bool(cfg: DictConfig, key: str) -> None:
    value = _get(cfg, key)
    if not isinstance(value, bool):
        raise not_allowed(key, value, "true or false")


def check_number(cfg: DictConfig, key: str, low: float, high: float = math.inf, low_open: bool = False,
                 high_open: bool = False) -> None:
    value = _get(cfg, key)
    if value is None and OmegaConf.select(cfg, key, default="absent") == "absent":
        return  # an optimiser without this option
    too_low = value < low or (low_open and value == low) if _is_number(value) else True
    too_high = value > high or (high_open and value == high) if _is_number(value) else True
    if too_low or too_high:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise not_allowed(key, value, f"a finite number in {left}{low}, {high}{right}")


def check_accelerator(cfg: DictConfig) -> None:
    accelerator = _get(cfg, "trainer.accelerator")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise not_allowed("trainer.accelerator", accelerator, "cpu or auto on this machine (torch sees no CUDA GPU)")
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise not_allowed("trainer.accelerator", accelerator, "cpu or auto on this machine (no MPS device)")


def check_config(cfg: DictConfig) -> None:
    """Every check that needs only the config. Raises :class:`ConfigError` at the first bad value."""
    check_int(cfg, "seed", 0)
    check_int(cfg, "threads", 1, optional=True)
    check_bool(cfg, "branching")
    check_number(cfg, "optim.lr", 0.0, low_open=True)
    check_number(cfg, "optim.momentum", 0.0, 1.0, high_open=True)
    check_number(cfg, "optim.weight_decay", 0.0)
    check_int(cfg, "data.batch_size", 1)
    check_int(cfg, "data.eval_batch_size", 1)
    check_int(cfg, "checkpoint.every_n_epochs", 0)
    check_number(cfg, "checkpoint.min_seconds", 0.0)
    if cfg.get("probes"):
        check_int(cfg, "probes.probe_size", 1)
        check_int(cfg, "probes.chunk_size", 1, optional=True)
        check_int(cfg, "probes.every_n_epochs", 0)
    if cfg.get("logger") and cfg.logger.get("wandb"):
        check_number(cfg, "logger.wandb.init_timeout", 0.0, low_open=True)
    check_accelerator(cfg)


def check_probe_size(cfg: DictConfig, train_size: int) -> None:
    """The probe set is drawn from the training split, so it cannot be larger."""
    size = _get(cfg, "probes.probe_size") if cfg.get("probes") else None
    if size is not None and size > train_size:
        raise not_allowed("probes.probe_size", size, f"between 1 and {train_size} (the training split's size)")
    covariance = cfg.probes.get("covariance") if cfg.get("probes") else None
    if covariance:  # K's mini-batches are drawn from the training split too
        needed = covariance.batches * covariance.batch_size
        if needed > train_size:
            raise not_allowed("probes.covariance.batches", covariance.batches,
                              f"at most {train_size // covariance.batch_size} with probes.covariance.batch_size="
                              f"{covariance.batch_size} (the training split has {train_size} examples)")
