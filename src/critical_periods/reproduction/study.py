"""What every study of the reproduction is made of: the ``Study`` record, the seeds every judged
condition uses, the stiffness-only probe overrides, and running one logged command. The topic
modules (``studies_<topic>.py``) and ``studies`` import it; it imports none of them."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from critical_periods.config.paths import config_dir

CONF_DIR = config_dir()

SEEDS = "0,1,2,3,4"                 # >= 5 seeds per condition for every judged claim (docs/rules.yaml)
CONTROL_SEEDS = "100,101,102,103,104"  # fresh-seed no-deficit controls: seed 100 + s controls seed s

# Stiffness only (and the sampled Fisher trace the probe group always carries), every 2 epochs.
STIFFNESS_PROBES = ("probes=representation", "probes.representation.cka=false", "probes.representation.frequency=false",
                    "probes.representation.save_every_n_epochs=0", "probes.every_n_epochs=2")


@dataclass(frozen=True)
class Study:
    name: str
    claim: str
    full: tuple[tuple[str, ...], ...]   # one tuple of overrides per multirun command
    quick: tuple[tuple[str, ...], ...]
    protocol: dict[str, Any] = field(default_factory=dict)
    requires: tuple[str, ...] = ()      # config files (relative to conf/) the study needs
    model: str = "mlp"
    schedule: str = "decaying"

    def missing(self) -> list[str]:
        """The required config files this checkout does not have (then the study is skipped)."""
        return [path for path in self.requires if not (CONF_DIR / path).exists()]


def seeds(text: str) -> list[int]:
    return [int(s) for s in text.split(",")]



def run_logged(command: list[str], env: dict[str, str], sweep_dir: Path, what: str) -> None:
    """Run ``command``, its output kept in ``sweep_dir/logs/``; a failure names ``what`` and the log."""
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    (sweep_dir / "logs").mkdir(parents=True, exist_ok=True)
    log = sweep_dir / "logs" / f"{int(time.time() * 1000)}.log"
    log.write_text(" ".join(command) + "\n\n" + result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {result.returncode}); see {log}")
