"""Check a command line's whole config before Hydra starts anything: the run's, or every job's of a
multirun (``-m seed=0,abc`` fails before seed 0 trains). Bad input is one line on stderr and exit 2,
and nothing is written (no run folder, no ``.hydra/``, no log file).

Composition errors (an unknown group option, a key that does not exist, a value of the wrong type)
are Hydra's; they are shortened to one line naming the key and the closest valid names. The values
themselves are checked by ``config.validation.check_config``, the same check every job makes again.
"""

from __future__ import annotations

import difflib
import tempfile
import re
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from critical_periods.config.paths import CONF_DIR
from critical_periods.config.validation import ConfigError, check_config, not_allowed
from critical_periods.record.result_keys import flatten
from critical_periods.sweep.launch import launch_error

CONFIG_NAME = "train"
# Hydra's flags that print something and run nothing: no check needed.
INFO_FLAGS = ("help", "hydra_help", "cfg", "info", "shell_completion", "version")
OPTIONAL_GROUPS = ("sweep", "debug")  # `optional` in the defaults list: Hydra skips a missing option silently


def options(group: str) -> list[str]:
    return sorted(p.stem for p in Path(CONF_DIR, group).glob("*.yaml"))


def check_optional_groups(overrides: list[str], multirun: bool) -> None:
    """``sweep=nonexistent`` is skipped by Hydra without a word (the group is optional): refuse it."""
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key == "sweep" and value.startswith("wandb/"):
            raise ConfigError(launch_error(value, multirun))
        if key in OPTIONAL_GROUPS and value and value != "null" and value not in options(key):
            raise ConfigError(f"{key}={value} is not allowed: it must be one of {', '.join(options(key))}"
                              + closest(value, options(key)))


def closest(name: str, names: list[str]) -> str:
    found = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(found)}?)" if found else ""


def one_line(error: BaseException, known_keys: list[str], choices: dict[str, str]) -> str:
    """Hydra's composition error as one line naming the key and the closest valid names."""
    text = str(error)
    missing = re.search(r"Could not find '([^']+)/([^']+)'", text)
    if missing:
        group, option = missing.groups()
        listed = re.findall(r"^\t(\S+)$", text, re.M) or options(group)  # Hydra lists plugins' options too
        return f"{group}={option} is not allowed: it must be one of {', '.join(listed)}" + closest(option, listed)
    absent = re.search(r"Could not override '([^']+)'", text)
    if absent:
        key = absent.group(1)
        group = key.split(".")[0]
        if key in known_keys and group in choices:  # a key of the default option, not of the one chosen
            return f"{key} is not a key of this config with {group}={choices[group]}"
        return (f"{key} is not a key of this config" + closest(key, known_keys)
                + f"; to add a key nothing reads yet, write +{key}=...")
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    cause = error.__cause__
    detail = str(cause).strip().splitlines()[0] if cause is not None and str(cause).strip() else ""
    merging = re.match(r"Error merging override (\S+)", first)
    if merging and detail:
        return f"{merging.group(1)} is not allowed: {detail}"
    return " ".join(f"{first}: {detail}".split()) if detail else " ".join(first.split())


def job_overrides(base: DictConfig, overrides: list[str], multirun: bool) -> list[list[str]]:
    """Every job's overrides: the grid of a multirun (as the basic sweeper expands it), else the run's."""
    if not multirun:
        return [overrides]
    from critical_periods.sweep.siblings import grid

    with open_dict(base):
        base.hydra.overrides.task = overrides
    jobs = grid(base)
    return jobs if jobs is not None else [overrides]  # another sweeper: its base config is checked


def check_command(overrides: list[str], multirun: bool) -> int:
    """Compose and check the run, or every job of the multirun; returns how many configs were checked.
    Raises :class:`ConfigError` (one line) at the first bad one."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from hydra.types import RunMode
    from omegaconf.errors import OmegaConfBaseException

    check_optional_groups(overrides, multirun)
    mode = RunMode.MULTIRUN if multirun else RunMode.RUN
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        hydra = GlobalHydra.instance().hydra
        compose = lambda args: hydra.compose_config(CONFIG_NAME, list(args), run_mode=mode,  # noqa: E731
                                                    with_log_configuration=False)
        try:
            base = compose(overrides)
            study = OmegaConf.select(base, "hydra.runtime.choices.sweep")
            if (problem := launch_error(study, multirun)) is not None:
                raise ConfigError(problem)
            folder_key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
            check_writable(folder_key, Path(str(OmegaConf.select(base, folder_key))))
            jobs = job_overrides(base, overrides, multirun)
            for job in jobs:
                check_job(compose(job))
        except (HydraException, OmegaConfBaseException) as err:
            known = [k for k in flatten(OmegaConf.to_container(compose([]), resolve=False)) if "._" not in k]
            chosen = dict(o.lstrip("+~").split("=", 1) for o in overrides if "=" in o and "." not in o.split("=")[0])
            raise ConfigError(one_line(err, known, chosen)) from err
    return len(jobs)


def check_writable(key: str, folder: Path) -> None:
    """The run (or sweep) folder, or the nearest folder above it that exists, can be written."""
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        with tempfile.TemporaryFile(dir=existing):  # a real write: permissions alone miss read-only mounts
            pass
    except OSError as err:
        raise not_allowed(key, str(folder), f"a folder this user can write ({existing}: {err.strerror})") from None


def check_job(cfg: DictConfig) -> None:
    with open_dict(cfg):
        del cfg["hydra"]
        cfg.paths.output_dir = "."  # ${hydra:runtime.output_dir}: set by the launcher, not needed here
    check_config(cfg)


def exit_on_bad_input(argv: list[str]) -> None:
    """The entry points' first step: exit 2 with one line if the command's config is bad."""
    from hydra._internal.utils import get_args_parser

    args = get_args_parser().parse_args(argv)
    if any(getattr(args, flag, None) for flag in INFO_FLAGS) or args.config_path or args.config_dir or args.config_name:
        return  # Hydra prints what was asked; another config folder is the user's to check
    try:
        check_command(list(args.overrides), bool(args.multirun))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
