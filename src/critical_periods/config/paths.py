"""Where the project's Hydra configs and study files are. One place, so the entry points, the cost
plan, the reproduction and the W&B sweep files agree."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
# An absolute path: run as a console script, Hydra would look for a python module named "conf".
CONF_DIR = str(REPO / "conf")
SWEEPS_DIR = REPO / "sweeps"
