"""Sweeps: everything about a multirun as a whole rather than one run.

Exact checkpoint branching (jobs of a sweep that share their first epochs train them once):
``timeline`` when two jobs' states are equal; ``siblings`` the sweep's jobs; ``branch_store`` branch
points on disk; ``branch_plan`` what one job takes, saves and deletes; ``branching`` the one call a
training job makes. ``cost`` what a sweep will cost (the ``plan`` command); ``wandb_files`` the W&B
sweep files generated from the Hydra studies.
"""

