"""The condensation study (Xu et al.; Luo et al. 2021) whose standard-init runs also give Fort et al.'s
dynamical critical length: clean training of a one-hidden-layer MLP at three init scales, with the
condensation and binned-stiffness probes (``probes=condensation``) at the start and every epoch.

Measured cost (one core, load ~1.3 from other work, seeds launcher): the full grid (15 runs, three
processes of 5 seeds) 62 s of wall time; the quick grid 13 s.
"""

from __future__ import annotations

from critical_periods.reproduction.study import SEEDS, Study, seeds

INIT_SCALES = "0.01,0.1,1.0"     # small, intermediate, standard (PyTorch's default init)
CONDENSATION_EPOCHS = 20
EARLY_EPOCHS = 5                 # S = mean aligned fraction over the probes after epochs 1..EARLY_EPOCHS

COMMON = ("sweep=condensation", "hydra/launcher=seeds", f"schedule.epochs={CONDENSATION_EPOCHS}")

CONDENSATION_STUDIES = (
    Study(
        "condensation",
        "Xu et al. (condensation at small init) and Fort et al. (dynamical critical length): clean two-layer "
        "MLPs at three init scales, neuron directions and stiffness by input distance every epoch",
        full=((*COMMON, f"model.init_scale={INIT_SCALES}", f"seed={SEEDS}"),),
        quick=(("sweep=condensation", "hydra/launcher=seeds", "schedule.epochs=2", "model.widths=[32]",
                f"model.init_scale={INIT_SCALES}", "seed=0", "probes.probe_size=64"),),
        protocol={
            "models": ["mlp (one hidden layer of 256 ReLU units)"], "init_scales": [float(x) for x in INIT_SCALES.split(",")],
            "epochs": CONDENSATION_EPOCHS, "seeds": seeds(SEEDS), "lr_schedule": "0.05 x0.97 per epoch, momentum 0.9",
            "weight_decay": 0.0,
            "probes": "condensation of fc1 (|cos| > 0.9) and stiffness in 16 equal-count input-distance bins on 512 "
                      "training examples, at the start and after every epoch",
            "condensation_statistic": f"mean aligned fraction over the probes after epochs 1-{EARLY_EPOCHS}",
            "differs_from_paper": "MNIST-1D (d = 40) rather than the papers' 1-d/2-d toy regressions and CIFAR-10; "
                                  "cross-entropy rather than MSE; SGD with momentum rather than full-batch GD/Adam; "
                                  "PyTorch's uniform init scaled by a constant rather than N(0, m^(-2 gamma)); "
                                  "Fort's critical length from a 20-epoch MLP rather than their longer CIFAR runs",
            "wall_time": "62 s for the full grid on one core (measured, seeds launcher); quick grid 13 s",
        },
    ),
)
