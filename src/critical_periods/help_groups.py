"""The config groups ``--help`` lists (``conf/hydra/help/project.yaml``: ``${project_config_groups:}``).

Hydra's own list (``$APP_CONFIG_GROUPS``) shows every folder under ``conf/`` that holds YAML files as
a group, so ``sweeps/wandb/`` (W&B's sweep files, reached through ``conf/sweep``) appeared as a group
``sweep/wandb``, which it is not. This list is Hydra's format over the top-level groups only.
Registered when the package is imported, like ``job_files``; standard library and OmegaConf only.
"""

from __future__ import annotations

from omegaconf import OmegaConf

from critical_periods.config.paths import config_dir

RESOLVER = "project_config_groups"


def config_groups() -> str:
    """``group: option, option`` per line, sorted, as Hydra writes them; no ``hydra`` groups.

    >>> print(config_groups().splitlines()[0])
    data: cifar10, cifar100, digits, fashion_mnist, mnist, mnist1d, synthetic, teacher
    """
    conf = config_dir()
    lines = []
    for group in sorted(p for p in conf.iterdir() if p.is_dir() and p.name != "hydra"):
        options = sorted(p.stem for p in group.glob("*.yaml"))
        if options:
            lines.append(f"{group.name}: {', '.join(options)}")
    return "\n".join(lines)


def register() -> None:
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, config_groups)


register()
