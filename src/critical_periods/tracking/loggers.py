"""The loggers of a run: the run record always, plus every logger ``logger=`` chooses.

``logger=wandb`` (default), ``logger=csv``, ``logger=tensorboard``, several at once as a list
(``logger=[csv,tensorboard]``, ``logger=[wandb,csv]``, the lightning-hydra-template way: each option
is a key under ``logger``, holding that logger's options), or ``logger=none``. Every logger receives
the same numbers under the same names (metric_names.py); the run record (metrics.jsonl,
summary.json) is the source of truth. CSV and TensorBoard get the resolved config as hyperparameters
(hparams.yaml; TensorBoard's HPARAMS tab); W&B gets it as the run's config (wandb_run.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import CSVLogger, Logger, TensorBoardLogger

from critical_periods.record.epochs import EPOCH_END_KEYS
from critical_periods.record.metric_names import EPOCH, FINAL_TEST_ERROR
from critical_periods.record.metrics import RunRecordLogger

LOGGER_KINDS = ("wandb", "csv", "tensorboard")
# TensorBoard's step is an integer: values logged inside an epoch (early-step probes) go here, by step.
BY_STEP_PREFIX = "by_step/"


def logger_kinds(cfg: DictConfig) -> list[str]:
    """The chosen loggers, in config order (``[]`` for ``logger=none``); raises ``ValueError`` naming
    an unknown one and the allowed ones, or tensorboard without its package."""
    settings = cfg.get("logger")
    if not settings:
        return []
    kinds = list(settings.keys())
    for kind in kinds:
        if kind not in LOGGER_KINDS:
            raise ValueError(f"logger.{kind} is not allowed: the loggers are {', '.join(LOGGER_KINDS)} "
                             f"(logger=csv, logger=[csv,tensorboard], or logger=none)")
    if "tensorboard" in kinds:
        _require_tensorboard()
    return kinds


def uses_wandb(cfg: DictConfig) -> bool:
    return "wandb" in logger_kinds(cfg)


def logger_kind(cfg: DictConfig) -> str | None:
    """``"wandb"`` when W&B is among the chosen loggers, else the first one (``None``: no logger).
    What train.py asks today (``logger_kind(cfg) == "wandb"``); :func:`uses_wandb` says it directly."""
    kinds = logger_kinds(cfg)
    return "wandb" if "wandb" in kinds else (kinds[0] if kinds else None)


def _require_tensorboard() -> None:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        try:
            import tensorboardX  # noqa: F401
        except ImportError:
            raise ValueError(
                "logger=tensorboard needs tensorboard or tensorboardX: pip install \"critical-periods[tensorboard]\" "
                "(or choose logger=csv)"
            ) from None


class EpochAxis:
    """Epochs completed (0 at the initial weights, ``e + 1`` at the end of epoch ``e``) for a row as
    Lightning hands it to a logger, the axis of the analysis figures and W&B.

    Lightning logs an epoch's own numbers (``EPOCH_END_KEYS``) with its ``epoch`` at the step of the
    epoch's last batch (see ``analysis.curves``): the first such row gives the steps per epoch, and
    every later row (probes, test, final) is placed at step / steps per epoch. Until then (probes
    early in the first epoch) a row's place is a fraction of an epoch, unknown: ``None``.

    >>> axis = EpochAxis()
    >>> axis({"fisher/trace": 1.0, "epoch": 0}, 0), axis({"fisher/trace": 1.0, "epoch": 0}, 2)
    (0.0, None)
    >>> axis({"train/loss": 1.0, "epoch": 0}, 4), axis({"fisher/trace": 1.0, "epoch": 0}, 5)
    (1.0, 1.0)
    >>> axis({"fisher/trace": 1.0, "epoch": 1}, 7)
    1.4
    """

    def __init__(self) -> None:
        self.steps_per_epoch: float | None = None

    def __call__(self, metrics: dict[str, Any], step: int | None) -> float | None:
        epoch = metrics.get(EPOCH)
        if epoch is not None and EPOCH_END_KEYS & metrics.keys():
            if step is not None:
                self.steps_per_epoch = (step + 1) / (epoch + 1)
            return float(epoch) + 1.0
        if not step:
            return 0.0
        return step / self.steps_per_epoch if self.steps_per_epoch else None


class EpochTensorBoardLogger(TensorBoardLogger):
    """TensorBoard with epochs completed as its step axis (TensorBoard offers no other axis but time).

    Its step is an integer, so a value logged inside an epoch (a probe at an early step) is written
    under ``by_step/<name>`` against the optimiser step instead. Lightning's ``epoch`` (the epoch in
    progress) is not written: the axis says it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("default_hp_metric", False)  # no placeholder hp_metric = -1 chart
        super().__init__(*args, **kwargs)
        self.epoch_axis = EpochAxis()
        self._closed = 0

    def finalize(self, status: str) -> None:
        """Lightning closes the writer after fit and after test, and a closed writer reopens on the
        next write in a file named by the time in whole seconds: each reopening gets a suffix of its
        own, or a run shorter than a second would overwrite its training log with its test numbers.
        (TensorBoard reads every event file of the folder.)"""
        super().finalize(status)
        self._closed += 1
        for attribute in ("_filename_suffix", "filename_suffix"):  # tensorboardX's, torch's
            if self._experiment is not None and hasattr(self._experiment, attribute):
                setattr(self._experiment, attribute, f".{self._closed}")

    def log_hyperparams(self, params, metrics=None, step=None) -> None:
        """The config into hparams.yaml and the HPARAMS tab. Lightning writes the tab only with metric
        values, which a run has only at its end: the tab is given ``final/test_error``'s name here,
        and TensorBoard reads its value from that scalar's chart when the run logs it."""
        super().log_hyperparams(params, metrics, step)
        if metrics is not None:
            return
        from lightning_fabric.utilities.logger import _convert_params, _flatten_dict

        flat = self._sanitize_params(_flatten_dict(_convert_params(params)))
        try:
            from torch.utils.tensorboard.summary import hparams
        except ImportError:
            from tensorboardX.summary import hparams
        writer = self.experiment._get_file_writer()
        for summary in hparams(flat, {FINAL_TEST_ERROR: 0.0}):
            writer.add_summary(summary)

    def log_metrics(self, metrics, step=None) -> None:
        metrics = dict(metrics)
        epochs = self.epoch_axis(metrics, step)
        metrics.pop(EPOCH, None)
        if epochs is not None and float(epochs).is_integer():
            super().log_metrics(metrics, int(epochs))
        else:
            super().log_metrics({f"{BY_STEP_PREFIX}{key}": value for key, value in metrics.items()}, step)


LOGGER_CLASSES: dict[str, type[Logger]] = {"csv": CSVLogger, "tensorboard": EpochTensorBoardLogger}


def build_loggers(cfg: DictConfig, out_dir: Path) -> list[Logger]:
    """``[RunRecordLogger]`` plus Lightning's CSV and TensorBoard loggers when chosen, with their
    options from ``logger.<kind>`` and the resolved config as their hyperparameters. (W&B is not a
    Lightning logger here: ``wandb_run`` mirrors the record to it, live online or written at the end.)
    A resumed run's csv/tensorboard logs start a new ``version_N`` folder (their files cannot be
    appended to); the run record holds the whole run."""
    loggers: list[Logger] = [RunRecordLogger(out_dir)]
    config = OmegaConf.to_container(cfg, resolve=True)
    for kind in logger_kinds(cfg):
        if kind not in LOGGER_CLASSES:
            continue
        options = OmegaConf.to_container(cfg.logger[kind], resolve=True) or {}
        logger = LOGGER_CLASSES[kind](save_dir=str(out_dir), **{"name": kind, **options})
        logger.log_hyperparams(config)
        loggers.append(logger)
    return loggers
