"""Every metric name the run record, W&B, the analysis and the reproduction share: one place, so a
typo is an ImportError rather than a silently empty column.

Fixed names are module constants; families with a layer or index in them are functions.
``docs/metrics.md`` defines each one (formula, estimator, reduction).
"""

from __future__ import annotations

EPOCH = "epoch"
STEP = "step"

# -- training (ClassifierModule), per epoch --------------------------------------------------------
TRAIN_LOSS = "train/loss"
TRAIN_ACC = "train/acc"
VAL_LOSS = "val/loss"
VAL_ACC = "val/acc"
VAL_DEFICIT_ACC = "val_deficit/acc"
TEST_LOSS = "test/loss"
TEST_PREFIX = "test/"
TEST_ACC = "test/acc"
LR = "lr"
DEFICIT_ACTIVE = "deficit/active"

# -- the end of a completed run (summary.json and the last metrics row) ----------------------------
FINAL_PREFIX = "final/"
FINAL_TEST_ERROR = "final/test_error"
FINAL_TEST_ACC = "final/test_acc"
FINAL_TEST_LOSS = "final/test_loss"
FINAL_TRAIN_ACC = "final/train_acc"

# -- probes -------------------------------------------------------------------------------------------
PROBE_SECONDS = "probe/seconds"

FISHER_TRACE = "fisher/trace"


def fisher_layer_trace(layer: str) -> str:
    return f"{FISHER_TRACE}/{layer}"


def fisher_layer_share(layer: str) -> str:
    return f"fisher/share/{layer}"


# K from L mini-batch gradients of batch size B (Jastrzebski et al. 2020); see probes/covariance.py.
# K_B = (1/L) sum_l (g_l - g)(g_l - g)^T, rank <= L - 1 (defaults L = 25, B = 128).
LAMBDA_K1 = "break_even/lambda_k1"  # top eigenvalue of K_B
TRACE_K = "break_even/trace_k"  # tr K_B = (1/L) sum_l ||g_l||^2 - ||g||^2
COND_K = "break_even/cond_k"  # lambda_K^* / lambda_K^1, lambda_K^* = the (L-1)-th (smallest nonzero) eigenvalue
TRACE_K_RATIO = "break_even/trace_k_ratio"  # tr K_B / lambda_K^1; (L-1) cond_k <= it <= L-1
# The same statistics of the per-example covariance (B = 1) on the N probe examples, an option under
# names of its own: K_1 = (1/N) sum_i (g_i - g)(g_i - g)^T, lambda_K^* its (N-1)-th eigenvalue.
PER_EXAMPLE_LAMBDA_K1 = "break_even/per_example/lambda_k1"
PER_EXAMPLE_TRACE_K = "break_even/per_example/trace_k"
PER_EXAMPLE_COND_K = "break_even/per_example/cond_k"
DELTA_LOSS = "break_even/delta_loss"
DELTA_LOSS_ABS = "break_even/delta_loss_abs"

# The mean g of K's L mini-batch gradients: the gradient of the mean loss on those L B examples.
GRAD_NORM = "grad/norm"  # ||g||
GRAD_MEAN = "grad/mean"  # mean of the P entries of g
GRAD_STD = "grad/std"  # population std of the P entries of g

TRACE_H = "curvature/trace_h"


def lambda_h(index: int) -> str:
    """``curvature/lambda_h<index>``: the index-th largest Hessian eigenvalue (1-based)."""
    return f"curvature/lambda_h{index}"


LAMBDA_H1 = lambda_h(1)

# Stiffness (Fort et al. 2019), from the per-example Gram matrix of true-label gradients on the probe
# set: means over ordered pairs i != j of cos(g_i, g_j) and sign(<g_i, g_j>); see probes/stiffness.py.
STIFFNESS_COS_SAME = "stiffness/cos_same_class"
STIFFNESS_COS_DIFF = "stiffness/cos_diff_class"
STIFFNESS_SIGN_SAME = "stiffness/sign_same_class"
STIFFNESS_SIGN_DIFF = "stiffness/sign_diff_class"

# Frequency principle (Xu et al. 2019), filtering method on the probe set.
FREQUENCY_ERROR_LOW = "frequency/error_low"
FREQUENCY_ERROR_HIGH = "frequency/error_high"


def cka_vs_init(layer: str) -> str:
    """``cka/<layer>/vs_init``: linear CKA of the layer's output now vs at the initial weights."""
    return f"cka/{layer}/vs_init"


# Stiffness by input distance (Fort et al. 2019, Sec. 5), an option of the stiffness probe: the probe
# set's unordered pairs split into equal-count bins of input distance; see probes/stiffness_distance.py.
STIFFNESS_CRITICAL_LENGTH = "stiffness/critical_length"


def stiffness_distance_cos(bin_index: int) -> str:
    """``stiffness/by_distance/<kk>/cos``: mean cos stiffness of the pairs in distance bin kk (0: nearest)."""
    return f"stiffness/by_distance/{bin_index:02d}/cos"


def stiffness_distance(bin_index: int) -> str:
    """``stiffness/by_distance/<kk>/distance``: the mean input distance of the pairs in distance bin kk."""
    return f"stiffness/by_distance/{bin_index:02d}/distance"


# Condensation (Xu et al.; Luo et al. 2021) of the first Linear layer's neurons; see probes/condensation.py.
CONDENSATION_ALIGNED_FRACTION = "condensation/aligned_fraction"
CONDENSATION_CLUSTERS = "condensation/clusters"
CONDENSATION_MEAN_ABS_COS = "condensation/mean_abs_cos"
