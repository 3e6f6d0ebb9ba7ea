"""Fisher information and break-even probes: pure functions of (model, probe set) -> numbers.

No Lightning in here; ``critical_periods.callbacks.probes`` schedules these and logs what they return.
"""

from critical_periods.probes.compute import compute_probes
from critical_periods.probes.covariance import (
    CovarianceOptions,
    covariance_spectrum,
    gradient_covariance_metrics,
)
from critical_periods.probes.curvature import (
    HessianOperator,
    HessianOptions,
    hessian_metrics,
    hutchinson_trace,
    top_eigenvalues,
)
from critical_periods.probes.delta_loss import DeltaLoss
from critical_periods.probes.fisher import FisherOptions, fisher_metrics
from critical_periods.probes.gradients import ProbeGradients, collect_probe_gradients
from critical_periods.probes.per_example import PerExampleGradients, parametrised_layers

__all__ = [
    "CovarianceOptions",
    "DeltaLoss",
    "FisherOptions",
    "HessianOperator",
    "HessianOptions",
    "PerExampleGradients",
    "ProbeGradients",
    "collect_probe_gradients",
    "compute_probes",
    "covariance_spectrum",
    "fisher_metrics",
    "gradient_covariance_metrics",
    "hessian_metrics",
    "hutchinson_trace",
    "parametrised_layers",
    "top_eigenvalues",
]
