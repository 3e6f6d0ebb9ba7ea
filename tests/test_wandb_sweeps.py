"""The W&B sweep files are generated from the Hydra studies: same keys and the same values."""

from __future__ import annotations

import shutil

import yaml

from critical_periods.sweep import wandb_files as wandb_sweeps
from critical_periods.sweep.wandb_files import SWEEPS_DIR, grid_values, stale_files, studies


def test_committed_wandb_files_are_generated_from_the_studies():
    assert stale_files() == [], "run: python -m critical_periods.sweep.wandb_files"


def test_every_hydra_grid_point_is_a_wandb_grid_point():
    for study, params in studies().items():
        generated = yaml.safe_load((SWEEPS_DIR / "wandb" / f"{study}.yaml").read_text())
        assert generated["command"][-2:] == [f"sweep={study}", "${args_no_hyphens}"]
        for key, value in params.items():
            points = [_number_or_text(p) for p in generated["parameters"][key]["values"]]
            assert points == [_number_or_text(p.strip()) for p in _split_top_level(str(value))], (study, key)


def _number_or_text(value) -> float | str:
    try:
        return float(value)
    except ValueError:
        return str(value)


def _split_top_level(text: str) -> list[str]:
    """``"[1,2],[3]"`` -> ``["[1,2]", "[3]"]``: commas outside brackets separate grid points."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "[{"
        depth -= char in "]}"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


def test_grid_values_parse_hydra_sweep_syntax():
    assert grid_values("seed", "0,1,2") == [0, 1, 2]
    assert grid_values("optim.lr", "0.05, 0.1") == [0.05, 0.1]
    assert grid_values("deficit", "none,blur") == ["none", "blur"]
    assert grid_values("model.widths", "[512],[512,512]") == ["[512]", "[512,512]"]


def test_check_reports_a_stale_file_and_write_fixes_it(tmp_path):
    sweeps = tmp_path / "sweeps"
    shutil.copytree(SWEEPS_DIR, sweeps)
    (sweeps / "wandb" / "removal.yaml").write_text("stale\n")
    (sweeps / "wandb" / "gone.yaml").write_text("a study that no longer exists\n")
    assert wandb_sweeps.main(["--check", "--sweeps-dir", str(sweeps)]) == 1
    assert wandb_sweeps.main(["--sweeps-dir", str(sweeps)]) == 0
    assert stale_files(sweeps) == [] and not (sweeps / "wandb" / "gone.yaml").exists()
