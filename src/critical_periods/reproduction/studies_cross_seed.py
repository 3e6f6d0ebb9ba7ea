"""The cross-seed study (docs/rules.yaml: kornblith-layer-matching, kornblith-width,
instance-similarity-depth): clean networks that differ only in their seed, 10 of each, trained in
one process per architecture by the seeds launcher; no probes during training (the claims reload the
final checkpoints and compare the seeds on the same test examples)."""

from __future__ import annotations

from critical_periods.reproduction.study import Study, seeds

CROSS_SEED_SEEDS = "0,1,2,3,4,5,6,7,8,9"   # >= 10 instances (issue 21, section 2)
CROSS_SEED_WIDTHS = (32, 64, 128, 256)      # 6 hidden layers each; 512 was over the budget (pilot)
CROSS_SEED_EPOCHS = 60
HIDDEN_LAYERS = 6


def _widths(widths: tuple[int, ...]) -> str:
    return ",".join("[" + ",".join([str(w)] * HIDDEN_LAYERS) + "]" for w in widths)


COMMON = ("sweep=cross_seed", "hydra/launcher=seeds", "probes=none")

CROSS_SEED_STUDIES = (
    Study(
        "cross_seed",
        "Kornblith et al. 2019 (layer correspondence across seeds, width) and the depth trend of cross-instance "
        "similarity: 10 seeds of MLPs of 4 widths and of the conv1d net",
        full=((*COMMON, f"model.widths={_widths(CROSS_SEED_WIDTHS)}", f"schedule.epochs={CROSS_SEED_EPOCHS}",
               f"seed={CROSS_SEED_SEEDS}"),
              (*COMMON, "model=conv1d", f"schedule.epochs={CROSS_SEED_EPOCHS}", f"seed={CROSS_SEED_SEEDS}")),
        quick=((*COMMON, f"model.widths={_widths((8, 16))}", "schedule.epochs=1", "seed=0,1"),
               (*COMMON, "model=conv1d", "model.channels=4", "schedule.epochs=1", "seed=0,1")),
        protocol={"models": ["mlp", "conv1d"], "mlp_widths": list(CROSS_SEED_WIDTHS), "hidden_layers": HIDDEN_LAYERS,
                  "seeds": seeds(CROSS_SEED_SEEDS), "epochs": CROSS_SEED_EPOCHS, "deficit": "none",
                  "schedule": "lr 0.05 x0.97 per epoch, momentum 0.9", "launcher": "seeds (one process per architecture)",
                  "compared": "each run's final network on the first 1000 test examples, logits layer excluded; "
                              "every pair of seeds, layer x layer: linear CKA, debiased CKA, mean CCA (R2_CCA)",
                  "differs_from_paper": "MNIST-1D, 6-layer MLPs of width 32-256 and a 3-layer conv net instead of "
                                        "10-layer CIFAR-10 CNNs; 1000 examples instead of 10,000 (the budget)",
                  "cost": "measured on the 2-core machine, one torch thread, idle core: 324 s of training for the "
                          "whole grid (40 MLP runs, then 10 conv1d runs, each architecture's 10 seeds in one "
                          "process), plus about 40 s to reload the 50 networks and compare every pair"},
    ),
)
