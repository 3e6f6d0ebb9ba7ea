"""Hu et al. (2020): early in full-batch GD, a two-layer erf network tracks a linear model.

``network``: the NTK-parameterised two-layer student; ``linear_model``: the linear model trained by
the same GD (the probe's reference); ``gd``: one run of both side by side; ``run``: a grid of runs.
"""
