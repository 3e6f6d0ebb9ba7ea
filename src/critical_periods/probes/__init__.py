"""Fisher information, break-even and stiffness probes: pure functions of (model, probe set) -> numbers.

No Lightning in here; ``critical_periods.callbacks.probes`` schedules these and logs what they return.
"""

from critical_periods.probes.compute import ProbeResults, compute_probes
from critical_periods.probes.covariance import (
    CovarianceOptions,
    covariance_spectrum,
    covariance_statistics,
    minibatch_covariance_metrics,
    minibatch_gradients,
    per_example_covariance_metrics,
)
from critical_periods.probes.curvature import (
    HessianOperator,
    HessianOptions,
    hessian_metrics,
    LanczosResult,
    hutchinson_trace,
    lanczos,
    top_eigenvalues,
)
from critical_periods.probes.delta_loss import DeltaLoss
from critical_periods.probes.fisher import FisherOptions, fisher_metrics
from critical_periods.probes.gradients import ProbeGradients, collect_probe_gradients
from critical_periods.probes.per_example import PerExampleGradients, parametrised_layers
from critical_periods.probes.stiffness import StiffnessOptions, stiffness_from_gram

__all__ = [
    "CovarianceOptions",
    "DeltaLoss",
    "FisherOptions",
    "HessianOperator",
    "HessianOptions",
    "LanczosResult",
    "PerExampleGradients",
    "ProbeGradients",
    "ProbeResults",
    "StiffnessOptions",
    "collect_probe_gradients",
    "compute_probes",
    "covariance_spectrum",
    "covariance_statistics",
    "fisher_metrics",
    "hessian_metrics",
    "hutchinson_trace",
    "lanczos",
    "minibatch_covariance_metrics",
    "minibatch_gradients",
    "parametrised_layers",
    "per_example_covariance_metrics",
    "stiffness_from_gram",
    "top_eigenvalues",
]
