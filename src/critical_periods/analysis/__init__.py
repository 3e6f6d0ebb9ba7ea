"""Sweep analysis: a sweep directory's run records -> tables (CSV) and the papers' figures (PNG).

Reads only what training wrote to disk (``metrics.jsonl``, ``summary.json``, ``.hydra/``), so it
works offline and without a W&B account. The command line is ``critical_periods.analyze``.

* ``runs``: find the job directories and load each into a :class:`~.runs.Run`;
* ``curves``: a metric's trajectory over training (epochs completed), peaks, means over seeds;
* ``tables``: per-run and per-condition tables (runs.csv, the removal and sensitivity tables);
* ``break_even``: break-even peaks before a common training accuracy (Jastrzebski et al. 2020);
* ``figures``: one function per figure;
* ``report``: the text printed to the terminal;
* ``wandb_summary``: the optional W&B summary run.
"""
