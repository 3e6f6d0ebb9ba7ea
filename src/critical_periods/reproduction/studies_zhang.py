"""The studies of Zhang et al. 2017 (random labels, shuffled pixels) and of Fort et al.'s random-label
stiffness claim: one sweep (``sweeps/random_labels.yaml``), two grids, every seed group trained by the
seeds launcher as one vectorised model.

Pilot (seed 0, before the rules): random labels for 150 epochs at the sweep's setting reached 94%
train accuracy at epoch 40 and 100% from epoch 50 (test error 89.9%), so 80 epochs leave room.
"""

from __future__ import annotations

from critical_periods.reproduction.study import CONTROL_SEEDS, SEEDS, STIFFNESS_PROBES, Study, seeds

FIT_EPOCHS = 80       # random labels for the whole run (pilot: fitted by epoch 50)
WINDOW_LENGTH = 20    # the early deficit window of the critical-period question
AFTER_WINDOW = 40     # clean epochs after it (Achille et al.'s 40)
PROBE_EVERY = 10      # stiffness every 10 epochs: the claim averages over probes, 9 of them suffice
PROBE_SIZE = 256
SEEDS_LAUNCHER = "hydra/launcher=seeds"
FIT = ("sweep=random_labels", f"deficit.length={FIT_EPOCHS}", "schedule.epochs_after_deficit=0", SEEDS_LAUNCHER)
WINDOW = ("sweep=random_labels", f"deficit.length={WINDOW_LENGTH}", f"schedule.epochs_after_deficit={AFTER_WINDOW}",
          "probes=none", SEEDS_LAUNCHER)
# Wall time of the full grids, one core, seeds launcher, measured under the shared CPU lock (other
# jobs ran beside it: load average 1.2-1.5 on 2 cores).
FIT_COST = "120 s (15 runs of 80 epochs, stiffness on 10 of them)"
WINDOW_COST = "115 s (20 runs of 60 epochs, no probes); both studies 235 s"
SETTING = {"models": ["mlp 40-256-256-10"], "optimiser": "SGD lr 0.05, momentum 0.9, no weight decay, constant lr",
           "batch_size": 128, "training_examples": 3600}
DIFFERS = ("MNIST-1D and a 2-hidden-layer MLP, not CIFAR-10/ImageNet and Inception/AlexNet; a constant lr "
           "without weight decay (the paper's random-label runs are unregularised too); epochs, not steps "
           "(both label sets train with the same steps per epoch, so the ratio is the same)")



def zhang_studies() -> tuple[Study, ...]:
    """The two studies."""

    # Stiffness only, on PROBE_SIZE examples labelled as the run trains them.
    probes = (*(o for o in STIFFNESS_PROBES if not o.startswith("probes.every_n_epochs")),
              f"probes.every_n_epochs={PROBE_EVERY}", f"probes.probe_size={PROBE_SIZE}")
    return (
    Study(
        "zhang_fit", "Zhang et al. 2017 and Fort et al. (random labels): true vs random labels for the whole run, stiffness every 10 epochs",
        full=((*FIT, "deficit=none,random_labels", f"seed={SEEDS}", *probes),
              (*FIT, "deficit=none", f"seed={CONTROL_SEEDS}", "probes=none")),
        quick=(("sweep=random_labels", "deficit=none,random_labels", "deficit.length=2", "schedule.epochs_after_deficit=0",
                "seed=0", *probes[:-1], "probes.probe_size=64", SEEDS_LAUNCHER),),
        protocol={**SETTING, "deficits": ["none", "random_labels"], "epochs": FIT_EPOCHS, "seeds": seeds(SEEDS),
                  "control_seeds": seeds(CONTROL_SEEDS) + ["true labels only, no probes"],
                  "probes": f"stiffness on {PROBE_SIZE} training examples every {PROBE_EVERY} epochs, labelled as trained",
                  "fit_threshold": "first epoch with train accuracy >= 99%",
                  "differs_from_paper": DIFFERS,
                  "cost": FIT_COST},
        schedule="constant",
    ),
    Study(
        "zhang_window", "Critical-period question of Zhang et al.'s deficits: random labels or shuffled pixels in epochs 0-19, then 40 clean epochs",
        full=((*WINDOW, "deficit=none,random_labels,shuffled_pixels", f"seed={SEEDS}"),
              (*WINDOW, "deficit=none", f"seed={CONTROL_SEEDS}")),
        quick=(("sweep=random_labels", "deficit=none,random_labels,shuffled_pixels", "deficit.length=1",
                "schedule.epochs_after_deficit=1", "probes=none", "seed=0", SEEDS_LAUNCHER),),
        protocol={**SETTING, "deficits": ["random_labels", "shuffled_pixels", "none"], "window": f"epochs 0-{WINDOW_LENGTH - 1}",
                  "epochs_after_deficit": AFTER_WINDOW, "seeds": seeds(SEEDS), "control_seeds": seeds(CONTROL_SEEDS),
                  "matched_control": "deficit none with the same length and seed", "probes": "none",
                  "epochs": WINDOW_LENGTH + AFTER_WINDOW, "cost": WINDOW_COST,
                  "differs_from_paper": "the paper has no such window: our own question (status observed)"},
        schedule="constant",
    ),
    )
