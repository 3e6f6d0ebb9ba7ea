"""The studies the reproduction runs: each is one or more Hydra multiruns into one sweep folder.

Every study uses the project's own sweeps (``sweeps/*.yaml``) with a grid given on the command
line; ``quick`` is a cut-down grid (minutes in all) for the slow-marked test. ``protocol`` is what
the report and ``reproduction.json`` print about the full grid (fixed here, before any verdict).

Every judged condition has 5 seeds (0-4) and, where a rule's control needs them, 5 fresh-seed
no-deficit runs (100-104). The grids follow docs/rules.yaml; their cost is printed by
``python -m critical_periods.plan -m <a study's overrides>`` (see the reproduction's README section).
Pilots of the previous rounds (seed 0 unless stated; MNIST-1D MLP, plain SGD at a constant lr):

* break-even lr, batch 128: lr 0.05 (2/lr = 40): lambda_H^1 35 by epoch 34, still rising, 60% training
  accuracy at epoch ~37; lr 0.1 (2/lr = 20): 14 at epoch 5, 19-29 from epoch 11 on, 60% at ~22;
  lr 0.2 (2/lr = 10): 9-19 from epoch 5, 60% at ~13, falling to 3 once the set is memorised.
* break-even batch at lr 0.1: batch 32 levels off at 11-19 from epoch 1, 60% at epoch ~8; batch 128 as
  above. (Batch 512 at lr 0.03 made 240 steps in 30 epochs and never got near 2/lr.)
* blur window at onset 0 (lr 0.05 x0.97, momentum 0.9), then 40 clean epochs, 3 seeds, paired with
  clean runs of the same length: MLP, 20 epochs: +2.7 pp (errors 34.3% vs 31.6%, seed std 0.45 pp:
  6x); conv1d, 40 epochs: +13.9 pp (24.7% vs 10.8%, seed std 0.58 pp: 24x).

Round 4 (this grid) cut the windows to 20 epochs and the clean epochs after every deficit to 20,
and probes break-even every 4 epochs, so that the whole grid fits 90 minutes on 2 cores; the cuts
were made before any run of this grid (docs/rules.yaml, history round 4).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from critical_periods.record.result_keys import folder_name_excludes
from critical_periods.analysis import break_even as be
from critical_periods.reproduction.study import (  # noqa: F401  (CONF_DIR, Study, ...: re-exported)
    CONF_DIR, CONTROL_SEEDS, SEEDS, STIFFNESS_PROBES, Study, run_logged, seeds,
)
# Each topic's studies live in a module of their own (built on reproduction.study).
from critical_periods.reproduction.studies_condensation import CONDENSATION_STUDIES
from critical_periods.reproduction.studies_cross_seed import CROSS_SEED_STUDIES
from critical_periods.reproduction.studies_early_linear import EARLY_LINEAR_STUDIES
from critical_periods.reproduction.studies_zhang import zhang_studies

MODELS = ("mlp", "conv1d")
# The reproduction's MLP: 3 hidden layers of 256, not the default 512 (3.6x cheaper a seed-epoch here:
# 0.10 s vs 0.36 s), so that 5 seeds of every condition fit the 90-minute budget (rules.yaml, round 4).
MLP_WIDTHS = "[256,256,256]"
MLP = ("model=mlp", f"model.widths={MLP_WIDTHS}")


def model_overrides(model: str) -> tuple[str, ...]:
    return MLP if model == "mlp" else (f"model={model}",)

REMOVAL_LENGTHS = "20,40,60"        # blur etc. from epoch 0, removed at these epochs
CONTROL_LENGTHS = "20,60"           # the lr controls: an early and a late removal (budget)
AFTER_DEFICIT = 20                  # clean epochs after every deficit (Achille et al.: the same for all;
                                    # 20, not 40, to fit the 90-minute budget: docs/rules.yaml, round 4)
WINDOW_LENGTH = 20                  # the sensitivity window (Achille Fig. 4: 40 of 160 epochs; ours learn in ~20)
WINDOW_ONSETS = "0,5,10,15,20,30,40,60"   # >= 8 onsets, dense where the networks learn
CONTROL_WINDOW_ONSETS = "0,10,20,60"      # the constant-lr window control: the judged onsets 0 and 60, and two between
BREAK_EVEN_LRS = "0.05,0.07,0.1,0.14,0.2"  # log-spaced by ~sqrt(2); 0.05 is the smallest that passed in 60 epochs
BREAK_EVEN_EPOCHS = 60
BREAK_EVEN_BATCH_LR = 0.1
BREAK_EVEN_BATCHES = "32,64,128,256"     # batch 512 never got near 2/lr in 60 epochs (pilot)
STIFFNESS_LRS = "0.01,0.1"
STIFFNESS_EPOCHS = 40
DEPTH_WIDTHS = "[256],[256,256,256,256]"  # 1 and 4 hidden layers (of the reproduction's width)
SCHEDULES = {"decaying": (), "constant": ("schedule.lr_schedule=constant",), "restart": ("schedule.lr_restart=true",)}

# The break-even probes every BREAK_EVEN_EVERY epochs and at BREAK_EVEN_EARLY_STEPS log-spaced steps up
# to step 300, without the Hutchinson trace tr H, which no claim reads: lambda_H^1 by Lanczos to 1% and
# K from mini-batch gradients.
BREAK_EVEN_EVERY = 4
BREAK_EVEN_EARLY_STEPS = 8
BREAK_EVEN_PROBES = ("probes=break_even", f"probes.every_n_epochs={BREAK_EVEN_EVERY}", "probes.hessian.trace_samples=0",
                     "probes.hessian.tolerance=0.01", f"probes.early_steps={BREAK_EVEN_EARLY_STEPS}",
                     "probes.early_until_step=300")
# The clean runs that give the Fisher trace (exact expectation over the classes), and, where the
# probe config provides them, the stiffness and frequency probes: probes=full without the costly
# break-even ones.
CLEAN_PROBES = ("probes=full", "probes.hessian=null", "probes.covariance=null", "probes.delta_loss=false",
                "probes.early_steps=0")


def removal_study(model: str, schedule: str, kinds: str, lengths: str) -> Study:
    """Achille Fig. 1-2: each kind from epoch 0, removed at each length, AFTER_DEFICIT clean epochs
    after; per seed a matched no-deficit run of each length (same epochs and lr schedule); and the
    fresh-seed no-deficit controls at the earliest and latest length."""
    name = {"decaying": "kinds", "constant": "constant_lr", "restart": "lr_restart"}[schedule] + f"_{model}"
    extra = SCHEDULES[schedule]
    common = ("sweep=kinds", *model_overrides(model), f"schedule.epochs_after_deficit={AFTER_DEFICIT}", "probes=none", *extra)
    quick = ("sweep=kinds", f"model={model}", "schedule.epochs_after_deficit=2", "probes=none", *extra)
    ends = f"{min(seeds(lengths))},{max(seeds(lengths))}"
    return Study(
        name, f"Achille Fig. 1-2 ({model}, {schedule} lr): removal curves of {kinds.replace(',', ', ')}",
        full=((*common, f"deficit={kinds},none", f"deficit.length={lengths}", f"seed={SEEDS}"),
              (*common, "deficit=none", f"deficit.length={ends}", f"seed={CONTROL_SEEDS}")),
        # one command (each costs a process start): the clean run matches the deficit runs' epochs
        quick=((*quick, "deficit=blur,none", "deficit.length=2", "seed=0"),),
        protocol={"models": [model], "deficits": kinds.split(","), "window_length": "from epoch 0 to the removal epoch",
                  "removal_epochs": seeds(lengths), "epochs_after_deficit": AFTER_DEFICIT, "seeds": seeds(SEEDS),
                  "control_seeds": seeds(CONTROL_SEEDS), "schedule": " ".join(extra) or "lr x0.97 per epoch, no restart",
                  "matched_control": "deficit none with the same length and seed",
                  "epochs": f"removal epoch + {AFTER_DEFICIT}", "probes": "none"},
        model=model, schedule=schedule,
    )


def sensitivity_study(model: str, schedule: str) -> Study:
    """Achille Fig. 4: a WINDOW_LENGTH-epoch blur window at each onset, AFTER_DEFICIT clean epochs after
    it, and per seed a matched no-deficit run of the same onset and length; the onset-0 clean runs of
    the decaying schedule also probe the exact Fisher trace, stiffness and the frequency errors (the
    fresh-seed controls too, for the frequency claim's control)."""
    extra = SCHEDULES[schedule]
    common = ("sweep=window", *model_overrides(model), f"deficit.length={WINDOW_LENGTH}",
              f"schedule.epochs_after_deficit={AFTER_DEFICIT}", *extra)
    quick = ("sweep=window", f"model={model}", "schedule.epochs_after_deficit=2", "deficit.length=2", "seed=0", *extra)
    onset_list = WINDOW_ONSETS if schedule == "decaying" else CONTROL_WINDOW_ONSETS
    onsets = seeds(onset_list)
    later = ",".join(map(str, onsets[1:]))
    probes = CLEAN_PROBES if schedule == "decaying" else ("probes=none",)
    name = f"sensitivity_{model}" if schedule == "decaying" else f"sensitivity_constant_{model}"
    return Study(
        name, f"Achille Fig. 4 ({model}, {schedule} lr): sensitivity to a {WINDOW_LENGTH}-epoch blur window vs onset"
        + (", beside the exact Fisher trace, stiffness and frequency errors of clean training" if schedule == "decaying" else ""),
        full=((*common, "deficit=blur", f"deficit.onset={onset_list}", f"seed={SEEDS}", "probes=none"),
              (*common, "deficit=none", f"deficit.onset={later}", f"seed={SEEDS}", "probes=none"),
              (*common, "deficit=none", f"deficit.onset={onsets[-1]}", f"seed={CONTROL_SEEDS}", "probes=none"),
              (*common, "deficit=none", "deficit.onset=0", f"seed={SEEDS},{CONTROL_SEEDS}", *probes)),
        quick=((*quick, "deficit=blur,none", "deficit.onset=0,2", *probes,
                *(("probes.probe_size=64",) if schedule == "decaying" else ())),),
        protocol={"models": [model], "window_length": WINDOW_LENGTH, "onsets": onsets,
                  "epochs_after_deficit": AFTER_DEFICIT, "seeds": seeds(SEEDS), "control_seeds": seeds(CONTROL_SEEDS),
                  "schedule": " ".join(extra) or "lr x0.97 per epoch",
                  "baseline": "deficit=none with the same onset and length, per seed",
                  "probes": "onset-0 clean runs: exact Fisher trace, stiffness and frequency errors on 512 examples every epoch"
                            if schedule == "decaying" else "none",
                  "epochs": f"onset + {WINDOW_LENGTH} + {AFTER_DEFICIT}"},
        model=model, schedule=schedule,
    )


BREAK_EVEN_QUICK = ("probes=break_even", "probes.probe_size=64", "probes.hessian.trace_samples=0", "probes.early_steps=2",
                    "probes.early_until_step=10", "schedule.epochs=2", "seed=0")


STUDIES = (
    *(removal_study(model, "decaying", "blur,vertical_flip,label_permutation,noise", REMOVAL_LENGTHS) for model in MODELS),
    *(removal_study(model, schedule, "blur,label_permutation,noise", CONTROL_LENGTHS)
      for model in MODELS for schedule in ("constant", "restart")),
    *(sensitivity_study(model, schedule) for model in MODELS for schedule in ("decaying", "constant")),
    Study(
        "depth", "Achille et al. (depth): blur removed at epoch 40 in MLPs of 1 and 4 hidden layers",
        full=(("sweep=depth", f"model.widths={DEPTH_WIDTHS}", "deficit=blur,none", "deficit.length=40",
               f"schedule.epochs_after_deficit={AFTER_DEFICIT}", f"seed={SEEDS}", "probes=none"),
              ("sweep=depth", f"model.widths={DEPTH_WIDTHS}", "deficit=none", "deficit.length=40",
               f"schedule.epochs_after_deficit={AFTER_DEFICIT}", f"seed={CONTROL_SEEDS}", "probes=none")),
        quick=(("sweep=depth", "model.widths=[64],[64,64]", "deficit=blur,none", "deficit.length=2",
                "schedule.epochs_after_deficit=1", "seed=0", "probes=none"),),
        protocol={"models": ["mlp"], "hidden_layers": [1, 4], "width": 256, "removal_epochs": [40], "epochs": 40 + AFTER_DEFICIT,
                  "epochs_after_deficit": AFTER_DEFICIT, "seeds": seeds(SEEDS), "control_seeds": seeds(CONTROL_SEEDS),
                  "schedule": "lr x0.97 per epoch", "probes": "none"},
    ),
    Study(
        "stiffness_lr", "Fort et al. (learning rate): clean runs at two constant lrs, stiffness every 2 epochs",
        full=(("sweep=kinds", *MLP, "deficit=none", "deficit.length=0", f"schedule.epochs_after_deficit={STIFFNESS_EPOCHS}",
               "schedule.lr_schedule=constant", f"optim.lr={STIFFNESS_LRS}", f"seed={SEEDS}", *STIFFNESS_PROBES),
              ("sweep=kinds", *MLP, "deficit=none", "deficit.length=0", f"schedule.epochs_after_deficit={STIFFNESS_EPOCHS}",
               "schedule.lr_schedule=constant", f"optim.lr={STIFFNESS_LRS.split(',')[0]}", f"seed={CONTROL_SEEDS}",
               *STIFFNESS_PROBES)),
        quick=(("sweep=kinds", "model=mlp", "deficit=none", "deficit.length=0", "schedule.epochs_after_deficit=2",
                "schedule.lr_schedule=constant", f"optim.lr={STIFFNESS_LRS}", "seed=0", *STIFFNESS_PROBES, "probes.probe_size=64"),),
        protocol={"models": ["mlp"], "lrs": [float(x) for x in STIFFNESS_LRS.split(",")], "epochs": STIFFNESS_EPOCHS,
                  "lr_schedule": "constant", "momentum": 0.9, "seeds": seeds(SEEDS),
                  "control_seeds": seeds(CONTROL_SEEDS) + [f"at lr {STIFFNESS_LRS.split(',')[0]} only"],
                  "probes": "stiffness on 512 training examples every 2 epochs"},
        schedule="constant",
    ),
    Study(
        "break_even_lr",
        "Jastrzebski conjecture 1 (MLP): learning rates that all pass break-even, every break-even probe",
        full=(("sweep=break_even_lr", *MLP, f"optim.lr={BREAK_EVEN_LRS}", f"schedule.epochs={BREAK_EVEN_EPOCHS}",
               f"seed={SEEDS}", *BREAK_EVEN_PROBES),),
        quick=(("sweep=break_even_lr", "optim.lr=0.05,0.2", *BREAK_EVEN_QUICK),),
        protocol={"models": ["mlp"], "window_length": None, "lrs": [float(x) for x in BREAK_EVEN_LRS.split(",")], "batch_size": 128,
                  "epochs": BREAK_EVEN_EPOCHS, "seeds": seeds(SEEDS), "momentum": 0.0, "weight_decay": 0.0,
                  "lr_schedule": "constant", "train_acc_threshold": be.PAPER_TRAIN_ACC_THRESHOLD,
                  "probes": f"lambda_H^1 (Lanczos, 512 examples), K from 25 mini-batch gradients of B=128; every "
                            f"{BREAK_EVEN_EVERY} epochs and at {BREAK_EVEN_EARLY_STEPS} log-spaced early steps up to step 300"},
        schedule="constant",
    ),
    Study(
        "break_even_batch",
        "Jastrzebski conjecture 2 (MLP): batch sizes that all pass break-even at one lr, every break-even probe",
        full=(("sweep=break_even_batch", *MLP, f"optim.lr={BREAK_EVEN_BATCH_LR}", f"data.batch_size={BREAK_EVEN_BATCHES}",
               f"schedule.epochs={BREAK_EVEN_EPOCHS}", f"seed={SEEDS}", *BREAK_EVEN_PROBES),),
        quick=(("sweep=break_even_batch", "optim.lr=0.1", "data.batch_size=32,512", *BREAK_EVEN_QUICK),),
        protocol={"models": ["mlp"], "window_length": None, "lr": BREAK_EVEN_BATCH_LR, "batch_sizes": seeds(BREAK_EVEN_BATCHES),
                  "epochs": BREAK_EVEN_EPOCHS, "seeds": seeds(SEEDS), "momentum": 0.0, "weight_decay": 0.0,
                  "lr_schedule": "constant", "train_acc_threshold": be.PAPER_TRAIN_ACC_THRESHOLD,
                  "probes": "as break_even_lr; K stays at B=128 whatever the training batch"},
        schedule="constant",
    ),
    Study(
        "representations",
        "Exploratory (Kornblith-style CKA, MLP): blur vs vertical flip removed at epoch 40, representations saved",
        full=(("sweep=kinds", *MLP, "deficit=blur,vertical_flip,none", "deficit.length=40",
               f"schedule.epochs_after_deficit={AFTER_DEFICIT}", f"seed={SEEDS}", "probes=representation"),),
        quick=(("sweep=kinds", "model=mlp", "deficit=blur,vertical_flip,none", "deficit.length=2",
                "schedule.epochs_after_deficit=1", "seed=0", "probes=representation"),),
        protocol={"models": ["mlp"], "deficits": ["blur", "vertical_flip", "none"], "window_length": 40, "removal_epochs": [40],
                  "epochs_after_deficit": AFTER_DEFICIT, "seeds": seeds(SEEDS),
                  "epochs": 40 + AFTER_DEFICIT,
                  "compared": "the earliest layer's representation at the last saved epoch, deficit vs clean run of "
                              "the same seed (debiased linear CKA)"},
        requires=("probes/representation.yaml",),
    ),
    *zhang_studies(),
    *CROSS_SEED_STUDIES,
    *EARLY_LINEAR_STUDIES,
    *CONDENSATION_STUDIES,
)


# What the 90-minute budget on 2 cores forced, said in the report (docs/rules.yaml, history round 4).
BUDGET = (f"{WINDOW_LENGTH}-epoch sensitivity windows (Achille et al.: 40 epochs of 160) at onsets {WINDOW_ONSETS.replace(',', ', ')} "
          f"(the constant-lr control at {CONTROL_WINDOW_ONSETS.replace(',', ', ')}); {AFTER_DEFICIT} clean epochs after every "
          f"Achille deficit (40 before this round; the papers train to convergence); the break-even probes every "
          f"{BREAK_EVEN_EVERY} epochs and at {BREAK_EVEN_EARLY_STEPS} early steps (every 2 before); an MLP of 3 hidden "
          f"layers of 256 (512 before); MNIST-1D and small networks instead of CIFAR-10 and ResNets "
          f"throughout. Every cut was made before any run of this grid.")

# The longest studies start first so that the two workers finish together (longest-first scheduling);
# the rest keep their order. Estimated from this grid's epochs (plan) and the seed-epoch costs here:
# conv1d ~0.14 s, the 256-wide MLP ~0.10 s, a break-even probe of it well under a second.
HEAVIEST_FIRST = ("sensitivity_conv1d", "kinds_conv1d", "break_even_lr", "sensitivity_mlp", "lr_restart_conv1d",
                  "sensitivity_constant_conv1d", "constant_lr_conv1d", "break_even_batch", "kinds_mlp")


def run_order(studies: Sequence[Study]) -> list[Study]:
    """``studies`` with those named in HEAVIEST_FIRST first, in that order; the others after, as given."""
    rank = {name: i for i, name in enumerate(HEAVIEST_FIRST)}
    return sorted(studies, key=lambda s: rank.get(s.name, len(rank)))


# The keys the studies set besides their grids; record.result_keys decides which stay out of the job
# folders' names (all of these: they change no training number).
STUDY_SETTINGS = ("sweep", "name", "logger", "trainer.enable_progress_bar", "threads", "probes.probe_size",
                       "probes.every_n_epochs", "probes.early_steps", "probes.early_until_step", "probes.hessian",
                       "probes.hessian.trace_samples", "probes.hessian.tolerance", "probes.covariance", "probes.delta_loss",
                       "probes.representation.cka", "probes.representation.frequency",
                       "probes.representation.save_every_n_epochs")
NOT_IN_FOLDER_NAMES = folder_name_excludes(STUDY_SETTINGS)


# Every study has seeds 0-4 and/or 100-104: the seeds launcher trains the jobs that differ only in
# seed as one vectorised model; the job folders and records are the basic launcher's.
LAUNCHER = "seeds"


def multirun_command(overrides: tuple[str, ...], sweep_dir: Path, extra: tuple[str, ...],
                     launcher: str = LAUNCHER) -> list[str]:
    return [sys.executable, "-m", "critical_periods.train", "-m", *overrides, *extra, f"hydra/launcher={launcher}",
            f"hydra.sweep.dir={sweep_dir}",
            f"hydra.job.config.override_dirname.exclude_keys=[{','.join(NOT_IN_FOLDER_NAMES)}]"]


def run_study(study: Study, out_dir: Path, quick: bool, extra: tuple[str, ...], threads: int | None,
              launcher: str = LAUNCHER) -> float:
    """Run every multirun of ``study`` into ``out_dir/<name>``; returns the wall time in seconds.
    Finished jobs are skipped (the sweeps are resumable), so an interrupted reproduction continues."""
    if hasattr(study, "run"):  # a study with its own runner (studies_early_linear)
        return study.run(out_dir, quick, threads)
    sweep_dir = out_dir / study.name
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
        extra = (*extra, f"threads={threads}")
    started = time.perf_counter()
    for overrides in study.quick if quick else study.full:
        run_logged(multirun_command(overrides, sweep_dir, extra, launcher), env, sweep_dir, f"study {study.name}: a multirun")
    return time.perf_counter() - started
