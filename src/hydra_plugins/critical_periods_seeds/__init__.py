"""Hydra finds launcher plugins in the ``hydra_plugins`` namespace package: this one registers
``hydra/launcher=seeds`` (critical_periods.seeds.launcher does the work)."""
