"""A non-editable install runs: the wheel carries conf/ and the studies, and its commands find them
from an empty folder, outside any checkout.

The fresh environment borrows the test interpreter's third-party packages (torch, Lightning, Hydra)
through a path file, so nothing is downloaded; a path file only adds the folder, its own path files
(an editable install of this project) are not run, so ``critical_periods`` comes from the wheel alone.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from critical_periods.record.summary import read_summary

from conftest import REPO

pytestmark = pytest.mark.slow  # builds a wheel and installs it in a fresh environment (~35 s)

# Run outputs and build leftovers at the top of a checkout (sweeps/wandb/ is source: kept).
TOP_LEVEL_LEFT_OUT = {".git", "build", "outputs", "multirun", "wandb", "data", "reproduction", ".pytest_cache"}


def left_out(folder: str, names: list[str]) -> set[str]:
    skipped = {n for n in names if n == "__pycache__" or n.endswith(".egg-info")}
    return skipped | (TOP_LEVEL_LEFT_OUT & set(names) if Path(folder) == REPO else set())
SHORT = ["data.source.num_samples=1000", "schedule.epochs_after_deficit=1", "trainer.enable_progress_bar=false"]


def run(*command: str | Path, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing from the checkout
    result = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            env={**env, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, f"{command}: {result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The bin/ folder of a fresh environment holding the project's wheel."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(REPO, source, symlinks=True, ignore=left_out)  # the build writes build/ into its tree
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", tmp / "dist", source, cwd=tmp)
    (wheel,) = (tmp / "dist").glob("critical_periods-*.whl")
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp)
    (packages,) = (venv / "lib").glob("python*/site-packages")
    (packages / "borrowed.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    run(venv / "bin" / "python", "-m", "pip", "install", "--no-deps", "--no-index", wheel, cwd=tmp)
    shutil.rmtree(source)  # no checkout left to fall back on
    return venv / "bin"


def test_the_wheel_holds_the_configs_and_the_package_comes_from_it(installed, tmp_path):
    probe = ("import critical_periods, critical_periods.config.paths as p; "
             "print(critical_periods.__file__); print(p.config_dir()); print(p.sweeps_dir())")
    package, conf, sweeps = run(installed / "python", "-c", probe, cwd=tmp_path).stdout.split()
    site_packages = installed.parent / "lib"
    assert Path(package).is_relative_to(site_packages)
    assert (Path(conf) / "train.yaml").is_file() and Path(conf).is_relative_to(site_packages)
    assert (Path(sweeps) / "removal.yaml").is_file() and (Path(sweeps) / "wandb" / "removal.yaml").is_file()


def test_the_installed_command_runs_the_default_experiment_and_a_sweep_from_an_empty_folder(installed, tmp_path):
    run(installed / "critical-periods-train", *SHORT, "deficit.length=1", "hydra.run.dir=run", cwd=tmp_path)
    assert read_summary(tmp_path / "run")["status"] == "completed"

    run(installed / "critical-periods-train", "-m", "sweep=removal", "deficit.length=0,1", "seed=0", *SHORT,
        "logger=none", cwd=tmp_path)
    jobs = sorted((tmp_path / "multirun" / "removal").glob("*/summary.json"))
    assert [read_summary(job.parent)["length"] for job in jobs] == [0, 1]
    assert all(read_summary(job.parent)["status"] == "completed" for job in jobs)
