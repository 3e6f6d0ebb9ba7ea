"""Every closed vocabulary of the project, in one place: a typo is a ``ValueError``, not a new
category. Each is a ``str`` enum, so its members compare equal to (and serialise as) their values.

>>> RunStatus("completed") is RunStatus.COMPLETED, RunStatus.COMPLETED == "completed"
(True, True)
>>> Verdict("not reproduced").counts_as_reproduction, Verdict.OBSERVED.counts_as_reproduction
(False, False)
>>> sorted(k.value for k in DeficitKind)[:3]
['blur', 'label_permutation', 'noise']
"""

from __future__ import annotations

import re
from enum import Enum


class _Vocabulary(str, Enum):
    def __str__(self) -> str:
        return self.value

    @classmethod
    def values(cls) -> list[str]:
        return [member.value for member in cls]


class RunStatus(_Vocabulary):
    """What a run's record says about it."""

    COMPLETED = "completed"      # trained and tested
    DIVERGED = "diverged"        # stopped on a non-finite training loss (a result, not an error)
    FAILED = "failed"            # an exception ended it; `error` says which
    INTERRUPTED = "interrupted"  # stopped by a signal (SIGTERM/SIGINT, pre-emption); resumes on re-run
    RUNNING = "running"          # written at start; still running, or killed without a chance to say so
    NOT_STARTED = "not_started"  # only Hydra's files: rejected or skipped before training (analysis only)
    DEBUG = "debug"              # a debug=default run (a couple of batches): never a result


class DeficitKind(_Vocabulary):
    """The deficits a run can apply during its window (``deficit.kind``)."""

    # In the order the figures show them.
    NONE = "none"
    BLUR = "blur"
    NOISE = "noise"
    VERTICAL_FLIP = "vertical_flip"
    LABEL_PERMUTATION = "label_permutation"
    RANDOM_LABELS = "random_labels"      # Zhang et al. 2017: a label per training example, drawn once
    SHUFFLED_PIXELS = "shuffled_pixels"  # Zhang et al. 2017: one fixed permutation of input positions

    @classmethod
    def from_target(cls, target: str) -> DeficitKind:
        """The kind of a deficit config's ``_target_`` class path.

        >>> DeficitKind.from_target("critical_periods.data.deficits.VerticalFlip")
        <DeficitKind.VERTICAL_FLIP: 'vertical_flip'>
        """
        name = target.rsplit(".", 1)[-1]
        snake = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
        return cls("none" if snake == "no_deficit" else snake)


class ScheduleMode(_Vocabulary):
    """How long a run trains (``schedule.mode``)."""

    AFTER_DEFICIT = "after_deficit"  # schedule.epochs_after_deficit clean epochs once the deficit ends
    FIXED = "fixed"                  # schedule.epochs in all


class LrSchedule(_Vocabulary):
    """The learning rate's multiplier per epoch (``schedule.lr_schedule``)."""

    CONSTANT = "constant"
    EXPONENTIAL = "exponential"  # lr_gamma ** epoch
    STEP = "step"                # lr_gamma ** (epoch // lr_step_size)


class FisherEstimator(_Vocabulary):
    """How the expectation over the model's labels y ~ p_w(y|x) is taken."""

    EXACT = "exact"      # a sum over all classes weighted by p (C backward passes)
    SAMPLED = "sampled"  # labels drawn from p (one backward pass per sample)


class LanczosStopping(_Vocabulary):
    """When Lanczos stops (``probes.hessian.stopping``)."""

    RESIDUAL = "residual"  # ||H x - theta x|| <= tolerance |theta|: the eigenvector converged too
    VALUE = "value"        # theta moved by <= tolerance |theta| in one step: power iteration's rule (PyHessian's)


class Verdict(_Vocabulary):
    """The status of a claim in the reproduction report."""

    REPRODUCED = "reproduced"          # the interval excludes 0 in the paper's direction and meets the minimal effect
    PARTLY = "partly"                  # a claim of several parts: some hold
    NOT_REPRODUCED = "not reproduced"  # the interval excludes the paper's effect
    INCONCLUSIVE = "inconclusive"      # neither
    OBSERVED = "observed"              # exploratory, no paper claim behind it: never counted as a reproduction

    @property
    def counts_as_reproduction(self) -> bool:
        return self in (Verdict.REPRODUCED, Verdict.PARTLY)
