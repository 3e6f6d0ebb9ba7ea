"""Shared fixtures: compose the real config, shrunk to seconds (lightning-hydra-template habit)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = str(REPO / "conf")

# A run that finishes in seconds: small mnist1d, a small MLP, no W&B, no probes, few epochs.
TINY = [
    "data.source.num_samples=1000",
    "model.widths=[32]",
    "logger=none",
    "probes=none",
    "deficit.length=1",
    "schedule.epochs_after_deficit=1",
    "trainer.enable_progress_bar=false",
]


@pytest.fixture
def make_cfg(tmp_path):
    """``make_cfg(*overrides)`` -> the composed training config, tiny, writing into ``tmp_path``."""

    def make(*overrides: str, tiny: bool = True) -> DictConfig:
        with initialize_config_dir(CONF_DIR, version_base="1.3"):
            return compose("train", overrides=[*(TINY if tiny else []), f"paths.output_dir={tmp_path}", *overrides])

    return make


def run_cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m critical_periods.train ARGS`` in a fresh process, as a user would."""
    full_env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "critical_periods.train", *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
    )
