"""Seeds in one process: the jobs of a multirun that differ only in ``seed``, trained as one
vectorised model (``hydra/launcher=seeds``), each writing the record its lone run would write.

* :mod:`.stacked`: S copies of a model as one module of stacked parameters, run with ``vmap``;
* :mod:`.module`, :mod:`.data`: the LightningModule and DataModule of a group;
* :mod:`.fanout`: every seed's loggers, probes and checkpoints, fed from the group's one trainer;
* :mod:`.group`: which jobs form a group, and training one;
* :mod:`.launcher`: the Hydra launcher (registered from ``hydra_plugins.critical_periods_seeds``).
"""
