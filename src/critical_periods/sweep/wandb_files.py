"""W&B sweep files generated from the Hydra studies, so the two grids can never drift apart:

    python -m critical_periods.sweep.wandb_files            # rewrite sweeps/wandb/<study>.yaml from sweeps/<study>.yaml
    python -m critical_periods.sweep.wandb_files --check    # exit 1 if a W&B file is stale (the tests run this)

Each W&B run of the sweep is a one-job Hydra multirun of the study: the agent runs
``python -m critical_periods.train -m sweep=<study> <key>=<value> ...`` with the grid point as Hydra
overrides (``${args_no_hyphens}``). ``-m`` is needed: a study is a multirun config (``sweep=<study>``
without it is refused), and the grid point's values replace the study's own grid, so the multirun has
exactly one job, in the study's folder ``multirun/<study>/<overrides>/`` like a job of the Hydra sweep.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from critical_periods.config.paths import SWEEPS_DIR
from critical_periods.record.metric_names import FINAL_TEST_ERROR

WANDB_DIR_NAME = "wandb"
# The agent substitutes ${env} (/usr/bin/env) and ${interpreter} (python); -m makes the Hydra run a
# multirun, the only way a study runs.
AGENT_COMMAND_HEAD = ["${env}", "${interpreter}", "-m", "critical_periods.train", "-m"]


def grid_values(key: str, values: str) -> list[Any]:
    """A Hydra sweep value (``"0,10,20"``, ``"[512],[512,512]"``) as the list of its points; lists are
    written back in Hydra's syntax, since the agent passes every value on the command line."""
    override = OverridesParser.create().parse_override(f"{key}={values}")
    points = list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
    return [_hydra_text(p) if isinstance(p, (list, dict)) else p for p in points]


def _hydra_text(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ",".join(_hydra_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_hydra_text(v)}" for k, v in value.items()) + "}"
    return str(value)


def wandb_sweep(study: str, params: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": study,
        "program": "src/critical_periods/train.py",
        "method": "grid",
        "metric": {"name": FINAL_TEST_ERROR, "goal": "minimize"},
        "parameters": {key: {"values": grid_values(key, str(value))} for key, value in params.items()},
        "command": AGENT_COMMAND_HEAD + [f"sweep={study}", "${args_no_hyphens}"],
    }


def render(study: str, params: dict[str, Any]) -> str:
    header = (
        f"# Generated from sweeps/{study}.yaml by `python -m critical_periods.sweep.wandb_files`: edit that file, not this one.\n"
        f"# Each agent run is a one-job Hydra multirun of the study (the grid point replaces its grid):\n"
        f"#   wandb sweep sweeps/wandb/{study}.yaml          # prints the sweep id\n"
        f"#   WANDB_MODE=online wandb agent ENTITY/PROJECT/SWEEP_ID\n"
    )
    return header + yaml.safe_dump(wandb_sweep(study, params), sort_keys=False, default_flow_style=None)


def studies(sweeps_dir: Path = SWEEPS_DIR) -> dict[str, dict[str, Any]]:
    """Every study in ``sweeps_dir`` with a grid: name -> its ``hydra.sweeper.params``."""
    found = {}
    for path in sorted(sweeps_dir.glob("*.yaml")):
        params = ((yaml.safe_load(path.read_text()) or {}).get("hydra") or {}).get("sweeper", {}).get("params")
        if params:
            found[path.stem] = params
    return found


def stale_files(sweeps_dir: Path = SWEEPS_DIR, write: bool = False) -> list[Path]:
    """The W&B files that differ from what the studies generate (rewritten when ``write``), plus any
    W&B file whose study no longer exists (deleted when ``write``)."""
    out_dir = sweeps_dir / WANDB_DIR_NAME
    expected = {out_dir / f"{study}.yaml": render(study, params) for study, params in studies(sweeps_dir).items()}
    stale = [path for path, text in expected.items() if not path.exists() or path.read_text() != text]
    orphans = [path for path in out_dir.glob("*.yaml") if path not in expected]
    if write:
        out_dir.mkdir(exist_ok=True)
        for path in stale:
            path.write_text(expected[path])
        for path in orphans:
            path.unlink()
    return stale + orphans


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m critical_periods.sweep.wandb_files", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files (exit 1 if any)")
    parser.add_argument("--sweeps-dir", type=Path, default=SWEEPS_DIR)
    args = parser.parse_args(argv)
    stale = stale_files(args.sweeps_dir, write=not args.check)
    for path in stale:
        print(f"{'stale' if args.check else 'written'}: {path}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
