"""Checks of config values, in one message format: ``key=value is not allowed: it must be <rule>``.

The schema (``config.schema``) checks types when Hydra composes; this module checks what a type
cannot say: ranges, choices, keys that no class reads, and what depends on the machine. Every check
raises a :class:`ConfigError` before the run folder is claimed, so nothing is left behind that would
block a corrected re-run. The model and data classes raise the same error with their own argument
names; :meth:`ConfigError.within` puts the config group in front (``widths`` -> ``model.widths``).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from enum import Enum
from typing import Any

from omegaconf import DictConfig, OmegaConf

from critical_periods.vocabulary import LanczosStopping, LrSchedule, ScheduleMode

# Lightning's precision settings (Trainer(precision=...)).
PRECISIONS = ("64-true", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64", "32", "16", "bf16",
              64, 32, 16)
# Hydra's instantiation keys: not arguments of the class they build.
HYDRA_KEYS = frozenset({"_target_", "_partial_", "_args_", "_recursive_", "_convert_"})


class ConfigError(ValueError):
    """A config value that is not allowed. ``str(error)`` is the whole message, one line."""

    def __init__(self, message: str, key: str | None = None, value: Any = None, rule: str | None = None) -> None:
        super().__init__(message)
        self.key, self.value, self.rule = key, value, rule

    def within(self, group: str) -> ConfigError:
        """The same error for the key inside config group ``group`` (a message without a key stays)."""
        if self.key is None or self.key.startswith(f"{group}."):
            return self
        return not_allowed(f"{group}.{self.key}", self.value, self.rule)


def not_allowed(key: str, value: Any, rule: str) -> ConfigError:
    """The one-line error for ``key=value``.

    >>> str(not_allowed("seed", -1, "a whole number >= 0"))
    'seed=-1 is not allowed: it must be a whole number >= 0'
    >>> str(not_allowed("widths", [0], "a list of whole numbers >= 1").within("model"))
    'model.widths=[0] is not allowed: it must be a list of whole numbers >= 1'
    """
    return ConfigError(f"{key}={value!r} is not allowed: it must be {rule}", key, value, rule)


def _get(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, default=None)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_int(cfg: DictConfig, key: str, low: int, optional: bool = False, high: int | None = None) -> None:
    value = _get(cfg, key)
    if optional and value is None:
        return
    if not _is_int(value) or value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"between {low} and {high}"
        raise not_allowed(key, value, f"a whole number {bounds}" + (" or null" if optional else ""))


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


def check_choice(cfg: DictConfig, key: str, vocabulary: type[Enum]) -> None:
    if _get(cfg, key) not in vocabulary.values():
        raise not_allowed(key, _get(cfg, key), f"one of {', '.join(vocabulary.values())}")


def check_schedule(cfg: DictConfig) -> None:
    for key, vocabulary in (("schedule.mode", ScheduleMode), ("schedule.lr_schedule", LrSchedule)):
        check_choice(cfg, key, vocabulary)
    check_number(cfg, "schedule.lr_gamma", 0.0, low_open=True)
    check_int(cfg, "schedule.lr_step_size", 1)
    check_int(cfg, "schedule.epochs", 1)
    check_int(cfg, "schedule.epochs_after_deficit", 0)


def check_trainer(cfg: DictConfig) -> None:
    """One device per run (a sweep parallelises over runs; several CPU devices would start a
    process group that waits forever for peers), a precision Lightning knows, an accelerator here."""
    import torch  # here: validating the rest of a config needs no torch

    devices = _get(cfg, "trainer.devices")
    if devices not in (1, "1", [0]) and not (devices == "auto" and _get(cfg, "trainer.accelerator") == "cpu"):
        raise not_allowed("trainer.devices", devices, "1: one device per run (a sweep runs its jobs in parallel, "
                          "not one job on several devices)")
    if _get(cfg, "trainer.precision") not in PRECISIONS:
        raise not_allowed("trainer.precision", _get(cfg, "trainer.precision"), f"one of {', '.join(PRECISIONS[:6])}")
    accelerator = _get(cfg, "trainer.accelerator")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise not_allowed("trainer.accelerator", accelerator, "cpu or auto on this machine (torch sees no CUDA GPU)")
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise not_allowed("trainer.accelerator", accelerator, "cpu or auto on this machine (no MPS device)")


def check_known_keys(cfg: DictConfig) -> None:
    """No top-level key the schema does not know (``+seed2=1`` would be read by nothing)."""
    from critical_periods.config.schema import TrainConfig

    known = {f.name for f in dataclasses.fields(TrainConfig)}
    for key in cfg:
        if key not in known and key != "hydra":
            raise ConfigError(f"{key} is not a key of this config (+{key}=... adds a key nothing reads); "
                              f"the top-level keys are {', '.join(sorted(known))}", key)


@functools.lru_cache(maxsize=None)  # a sweep checks the same few classes for every job
def _target_parameters(target: str) -> tuple[set[str], bool] | None:
    """The keyword parameters of what ``target`` names, and whether it takes ``**kwargs`` (``None``:
    not importable here; instantiation will say why)."""
    from hydra.utils import get_object

    try:
        built = get_object(target)
        parameters = inspect.signature(built).parameters.values()
    except (ImportError, AttributeError, ValueError, TypeError):
        return None
    names = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names, any(p.kind == p.VAR_KEYWORD for p in parameters)


def check_targets(cfg: DictConfig) -> None:
    """Every key of every ``_target_`` node is an argument of the class or function it builds
    (``+optim.lrr=0.1`` would otherwise fail only when training reaches it, or never)."""
    _check_target_tree(OmegaConf.to_container(cfg, resolve=False), "")


def _check_target_tree(node: Any, path: str) -> None:
    if not isinstance(node, dict):
        return
    target = node.get("_target_")
    found = _target_parameters(target) if isinstance(target, str) else None
    if found is not None:
        names, takes_any = found
        for key in node:
            if key not in HYDRA_KEYS and key not in names and not takes_any:
                raise ConfigError(f"{path}{key} is not an option of {target}: the options are "
                                  f"{', '.join(sorted(names - {'self'}))}", f"{path}{key}")
    for key, child in node.items():
        _check_target_tree(child, f"{path}{key}.")


def check_config(cfg: DictConfig) -> None:
    """Every check that needs only the config. Raises :class:`ConfigError` at the first bad value."""
    check_known_keys(cfg)
    check_int(cfg, "seed", 0)
    check_int(cfg, "threads", 1, optional=True)
    check_bool(cfg, "branching")
    check_number(cfg, "optim.lr", 0.0, low_open=True)
    check_number(cfg, "optim.momentum", 0.0, 1.0, high_open=True)
    check_number(cfg, "optim.weight_decay", 0.0)
    check_int(cfg, "data.batch_size", 1)
    check_int(cfg, "data.eval_batch_size", 1)
    check_schedule(cfg)
    check_int(cfg, "checkpoint.every_n_epochs", 0)
    check_number(cfg, "checkpoint.min_seconds", 0.0)
    if cfg.get("probes"):
        check_int(cfg, "probes.probe_size", 1)
        check_int(cfg, "probes.chunk_size", 1, optional=True)
        check_int(cfg, "probes.every_n_epochs", 0)
        check_int(cfg, "probes.early_steps", 0)
        check_int(cfg, "probes.early_until_step", 0)
        if cfg.probes.get("hessian"):
            check_choice(cfg, "probes.hessian.stopping", LanczosStopping)
    if cfg.get("logger") and cfg.logger.get("wandb"):
        check_number(cfg, "logger.wandb.init_timeout", 0.0, low_open=True)
    check_trainer(cfg)
    check_targets(cfg)


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
