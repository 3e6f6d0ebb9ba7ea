"""Bad input on the command line, as a cluster user types it: rejected before Hydra starts, in one
line naming the key, the value and the rule, with exit code 2, leaving nothing on disk; the whole
grid of a multirun is checked before its first job (and by the plan command)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import TINY, run_cli

from critical_periods.preflight import exit_on_bad_input

# (the command line, what its one line must say)
BAD_COMMANDS = {
    "devices on a CPU": (["trainer.devices=3"], "trainer.devices=3 is not allowed: it must be 1"),
    "unknown study": (["-m", "sweep=nonexistent"], "sweep=nonexistent is not allowed: it must be one of"),
    "added key nothing reads": (["+optim.lrr=0.1"], "optim.lrr is not an option of torch.optim.SGD"),
    "misspelled key": (["optim.lrr=0.1"], "optim.lrr is not a key of this config (did you mean optim.lr?)"),
    "added top-level key": (["+seed2=1"], "seed2 is not a key of this config"),
    "negative early steps": (["probes=fisher", "probes.early_steps=-1"], "probes.early_steps=-1 is not allowed: it must be a whole number >= 0"),
    "bad grid value": (["-m", "seed=0,abc"], "seed=abc is not allowed"),
    "key of another group option": (["probes.early_steps=3"], "probes.early_steps is not a key of this config with probes=none"),
    "unknown group option": (["model=nonexistent"], "model=nonexistent is not allowed: it must be one of all_cnn, conv1d"),
    "close group option": (["deficit=blurr"], "(did you mean blur?)"),
    "mistyped launcher": (["-m", "hydra/launcher=slurmm", "seed=0,1"], "hydra/launcher=slurmm is not allowed: it must be one of"),
    "bogus precision": (["trainer.precision=bogus"], "trainer.precision='bogus' is not allowed: it must be one of 64-true"),
    "fractional seed": (["seed=1.5"], "seed=1.5 is not allowed"),
    "study without -m": (["sweep=removal"], "sweep=removal is a multirun study: run it with -m"),
    "W&B sweep file as a study": (["-m", "sweep=wandb/removal"], "the Hydra study is sweep=removal (with -m)"),
    "schedule mode": (["schedule.mode=sideways"], "schedule.mode='sideways' is not allowed: it must be one of after_deficit, fixed"),
    "lr schedule": (["schedule.lr_schedule=cosine"], "schedule.lr_schedule='cosine' is not allowed"),
    "Lanczos stopping rule": (["probes=break_even", "probes.hessian.stopping=power"],
                              "probes.hessian.stopping='power' is not allowed: it must be one of residual, value"),
    "unknown logger": (["logger=nonexistent"], "logger=nonexistent is not allowed: it must be one of csv, none"),
    "GPU on a CPU machine": (["trainer.accelerator=gpu"], "trainer.accelerator='gpu' is not allowed"),
    "bad value in a later grid job": (["-m", "seed=0,1", "threads=0"], "threads=0 is not allowed"),
}


def files_under(folder: Path) -> list[Path]:
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


@pytest.mark.parametrize("case", list(BAD_COMMANDS))
def test_a_bad_command_is_one_line_and_exit_2_before_anything_is_written(case, tmp_path, capsys, monkeypatch):
    args, message = BAD_COMMANDS[case]
    monkeypatch.chdir(tmp_path)  # Hydra would write outputs/ or multirun/ here
    with pytest.raises(SystemExit) as exited:
        flags = [a for a in args if a.startswith("-")]
        exit_on_bad_input([*flags, *TINY, *(a for a in args if a not in flags)])  # later overrides win
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err, err
    assert files_under(tmp_path) == []


def test_a_good_command_passes_and_info_flags_are_left_to_hydra(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exit_on_bad_input(TINY)  # returns
    exit_on_bad_input(["-m", "sweep=removal", "seed=0"])
    exit_on_bad_input(["seed=1.5", "--cfg", "job"])  # Hydra reports it when it prints the config
    assert files_under(tmp_path) == []


def test_an_unwritable_run_folder_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("not a folder")
    with pytest.raises(SystemExit):
        exit_on_bad_input([*TINY, f"hydra.run.dir={tmp_path}/a_file/run"])
    err = capsys.readouterr().err
    assert "hydra.run.dir=" in err and "it must be a folder this user can write" in err and "Not a directory" in err


@pytest.mark.parametrize("entry", ["module", "console script"])
def test_the_real_commands_refuse_a_bad_grid_before_its_first_job(tmp_path, entry):
    args = ["-m", *TINY, "seed=0,abc", f"hydra.sweep.dir={tmp_path}/sweep"]
    if entry == "module":
        result = run_cli(*args, cwd=tmp_path)
    else:
        import subprocess
        import sys

        script = Path(sys.executable).parent / "critical-periods-train"
        result = subprocess.run([str(script), *args], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                                env={**os.environ, "WANDB_MODE": "offline"})
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == ["error: seed=abc is not allowed: Value 'abc' of type 'str' could "
                                                  "not be converted to Integer"]
    assert files_under(tmp_path) == []  # seed 0 never trained: no sweep folder, no .hydra, no log


def test_plan_refuses_an_unknown_study_and_a_bad_grid_value(capsys):
    from critical_periods.plan import main

    assert main(["-m", "sweep=nonexistent"]) == 2
    assert main(["-m", "sweep=removal", "seed=0,abc"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("error: sweep=nonexistent is not allowed") and lines[1].startswith("error: seed=abc")

