"""The optional W&B summary run: the analysis' tables and figures, in the sweep's W&B group.

One run with ``job_type="analysis"``, group = the sweep's name (``name`` in the summaries), project
from the runs' ``config.logger.wandb.project`` (else ``critical-periods``), mode from ``WANDB_MODE``
(default offline), run files inside the analysis directory.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from critical_periods.analysis.runs import Run

DEFAULT_PROJECT = "critical-periods"


def _most_common(values: list[str | None], default: str | None) -> str | None:
    values = [v for v in values if v]
    return Counter(values).most_common(1)[0][0] if values else default


def log_summary_run(
    runs: Sequence[Run],
    out_dir: Path,
    tables: dict[str, tuple[Sequence[str], Sequence[dict[str, Any]]]],
    figures: dict[str, Path],
) -> Path:
    """Log ``tables`` (file name -> (columns, rows)) as ``wandb.Table`` under the file's stem
    (``runs``, ``break_even``) and ``figures`` (file name -> PNG) as ``wandb.Image`` under
    ``figures/<stem>``, to one summary run; return the run's directory."""
    import wandb  # imported here: the analysis itself never needs it

    group = _most_common([r.name for r in runs], None)
    run = wandb.init(
        project=_most_common([r.project for r in runs], DEFAULT_PROJECT),
        group=group,
        job_type="analysis",
        name=f"analysis-{group}" if group else "analysis",
        dir=str(out_dir),
        mode=os.environ.get("WANDB_MODE") or "offline",
        config={"sweep_runs": len(runs), "completed_runs": sum(r.completed for r in runs)},
        settings=wandb.Settings(silent=True),
    )
    try:
        payload: dict[str, Any] = {}
        for name, (columns, rows) in tables.items():
            payload[Path(name).stem] = wandb.Table(columns=list(columns), data=[[row.get(c) for c in columns] for row in rows])
        for name, path in figures.items():
            payload[f"figures/{Path(name).stem}"] = wandb.Image(str(path), caption=Path(name).stem)
        run.log(payload)
        run_dir = Path(run.dir).parent
    finally:
        wandb.finish()
    return run_dir
