"""The loggers of a run: the run record always, plus the one ``logger=`` chooses.

``logger=wandb`` (default), ``logger=csv`` or ``logger=tensorboard`` (Lightning's own loggers, in the
run folder beside the record), ``logger=none``. Every logger receives the same numbers under the same
names (metric_names.py); the run record (metrics.jsonl, summary.json) is the source of truth.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig
from pytorch_lightning.loggers import CSVLogger, Logger, TensorBoardLogger

from critical_periods.record.metrics import RunRecordLogger

LOGGER_KINDS = ("wandb", "csv", "tensorboard")


def logger_kind(cfg: DictConfig) -> str | None:
    """The chosen logger (``None`` for ``logger=none``); raises with the allowed values otherwise."""
    settings = cfg.get("logger")
    if not settings:
        return None
    kind = settings.get("kind", "wandb")
    if kind not in LOGGER_KINDS:
        raise ValueError(f"logger.kind={kind!r} is not allowed: it must be one of {', '.join(LOGGER_KINDS)} (or logger=none)")
    if kind == "tensorboard":
        _require_tensorboard()
    return kind


def _require_tensorboard() -> None:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        try:
            import tensorboardX  # noqa: F401
        except ImportError:
            raise ValueError(
                "logger=tensorboard needs tensorboard or tensorboardX: pip install -e \".[tensorboard]\" (or choose logger=csv)"
            ) from None


def build_loggers(cfg: DictConfig, out_dir: Path) -> list[Logger]:
    """``[RunRecordLogger]`` plus Lightning's CSV or TensorBoard logger when chosen. (W&B is not a
    Lightning logger here: ``wandb_run`` mirrors the record to it, live online or written at the end.)
    A resumed run's csv/tensorboard logs start a new ``version_N`` folder (their files cannot be
    appended to); the run record holds the whole run."""
    loggers: list[Logger] = [RunRecordLogger(out_dir)]
    kind = logger_kind(cfg)
    if kind == "csv":
        loggers.append(CSVLogger(save_dir=str(out_dir), name="csv"))
    elif kind == "tensorboard":
        loggers.append(TensorBoardLogger(save_dir=str(out_dir), name="tensorboard", default_hp_metric=False))
    return loggers
