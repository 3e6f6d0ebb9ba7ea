"""When to run the probes during training, and where their numbers go. The maths is in ``probes/``."""

from __future__ import annotations

import math
import random
import time
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from critical_periods.record import metric_names as names
from critical_periods.probes import (
    CovarianceOptions,
    DeltaLoss,
    FisherOptions,
    HessianOptions,
    StiffnessOptions,
    compute_probes,
)
from critical_periods.probes.condensation import CondensationOptions, condensation_metrics
from critical_periods.probes.representation_probes import RepresentationOptions, RepresentationProbe
from critical_periods.record.jsonl import append_row
from critical_periods.record.layout import STIFFNESS_FILE
from critical_periods.record.resume import trim_stiffness

def log_spaced_steps(until_step: int, count: int) -> set[int]:
    """About ``count`` global steps in [1, until_step], log-spaced (dense where the break-even point lies).

    >>> sorted(log_spaced_steps(100, 5))
    [1, 3, 10, 32, 100]
    """
    if count <= 0 or until_step < 1:
        return set()
    return {int(s) for s in np.unique(np.round(np.geomspace(1, until_step, count)))}


class ProbeCallback(pl.Callback):
    """Runs the probes on a fixed probe set and logs their metrics to every logger.

    The probe set (``probe_size`` clean, stratified training examples chosen by ``seed``) comes from
    ``trainer.datamodule.probe_set(probe_size, seed)`` once, at fit start; so do the covariance's
    mini-batches, ``trainer.datamodule.gradient_batches(covariance.batches, covariance.batch_size,
    seed)``. Probes run on ``pl_module.model`` if the module has one, else on ``pl_module``:

    * before the first step (``at_start``; not when resuming from a checkpoint), at the end of every
      ``every_n_epochs``-th epoch (0: never), and after the log-spaced global steps
      ``log_spaced_steps(early_until_step, early_steps)``;
    * ``fisher``/``covariance``/``hessian``/``stiffness``: the probes' options, ``None`` to skip one.
      The stiffness class x class matrix is appended to ``<trainer.default_root_dir>/stiffness.jsonl``
      at the start probe and after every ``stiffness.matrix_every_n_epochs``-th epoch; at train start
      the rows of epochs the run is about to (re)train are dropped, so a resumed run has no duplicates;
    * ``condensation``: the first Linear layer's neuron directions (weights only, no probe set needed);
    * ``delta_loss``: statistics of the change of the training loss (``outputs["loss"]``) between
      consecutive training batches, logged at every epoch end.

    Each call logs ``{**metrics, "probe/seconds": wall time, "epoch": trainer.current_epoch}`` at
    ``step=trainer.global_step``. Random draws use a generator seeded from ``(seed, global_step)``, so
    a call's numbers depend on the run and the step only. Non-finite metrics are logged as NaN with a
    warning; they never stop training.
    """

    def __init__(
        self,
        seed: int,
        probe_size: int = 512,
        chunk_size: int | None = None,
        fisher: FisherOptions | None = None,
        covariance: CovarianceOptions | None = None,
        hessian: HessianOptions | None = None,
        stiffness: StiffnessOptions | None = None,
        representation: RepresentationOptions | None = None,
        condensation: CondensationOptions | None = None,
        delta_loss: bool = False,
        every_n_epochs: int = 1,
        at_start: bool = True,
        early_steps: int = 0,
        early_until_step: int = 0,
    ) -> None:
        super().__init__()
        self.seed = int(seed)
        self.probe_size = int(probe_size)
        self.chunk_size = int(chunk_size) if chunk_size else None
        self.fisher, self.covariance, self.hessian, self.stiffness = fisher, covariance, hessian, stiffness
        self.representation = representation
        self.condensation = condensation
        self._representations: RepresentationProbe | None = None  # built at train start
        self.delta_loss = DeltaLoss() if delta_loss else None
        self.every_n_epochs = int(every_n_epochs)
        self.at_start = at_start
        self.early_steps = log_spaced_steps(int(early_until_step), int(early_steps))
        self._probe_set: tuple[Tensor, Tensor] | None = None
        self._covariance_batches: tuple[Tensor, Tensor] | None = None
        self._last_matrix: Tensor | None = None  # of the last probed step, while not saved yet
        self._last_probed_step: int | None = None
        self._hessian_vectors: Tensor | None = None  # the last probe's, for hessian.warm_start

    @property
    def _any_probe(self) -> bool:
        probes = (self.fisher, self.covariance, self.hessian, self.stiffness, self.representation, self.condensation)
        return any(o is not None for o in probes)

    @property
    def _matrix_every(self) -> int:
        return self.stiffness.matrix_every_n_epochs if self.stiffness is not None else 0

    # -- hooks ---------------------------------------------------------------------------------------

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._any_probe:
            return
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "probe_set"):
            raise RuntimeError(
                "ProbeCallback needs trainer.datamodule.probe_set(size, seed): fit with a data module "
                "that provides it, or choose probes=none"
            )
        # The data module is not ours: keep the RNG streams training uses exactly where they were.
        # (CPU torch, numpy and random; CUDA is left alone so a CPU run never initialises it.)
        with torch.random.fork_rng(devices=[]):
            numpy_state, python_state = np.random.get_state(), random.getstate()
            inputs, labels = datamodule.probe_set(self.probe_size, self.seed)
            if self.covariance is not None:
                options = self.covariance
                batches = datamodule.gradient_batches(options.batches, options.batch_size, self.seed)
            np.random.set_state(numpy_state)
            random.setstate(python_state)
        self._probe_set = (inputs.to(pl_module.device), labels.to(pl_module.device))
        if self.covariance is not None:
            self._covariance_batches = tuple(t.to(pl_module.device) for t in batches)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The checkpoint (if any) is restored by now: current_epoch is the first epoch to train.
        if self.stiffness is not None and trainer.is_global_zero:
            trim_stiffness(Path(trainer.default_root_dir), trainer.current_epoch)
        if self.representation is not None and self._probe_set is not None and trainer.is_global_zero:
            self._representations = RepresentationProbe(
                self.representation, Path(trainer.default_root_dir), *self._probe_set, self.chunk_size
            )
            self._representations.start(getattr(pl_module, "model", pl_module), resumed=trainer.global_step > 0)
        if self.at_start and trainer.global_step == 0:  # a resumed run was probed at this step already
            self._probe(trainer, pl_module, save_matrix=self._matrix_every > 0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.delta_loss is not None:
            loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
            if isinstance(loss, Tensor):  # None when training_step skipped the batch
                self.delta_loss.update(loss)
        if trainer.global_step in self.early_steps:
            self._probe(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.delta_loss is not None and self.delta_loss.count > 0:
            self._log(trainer, self._finite(self.delta_loss.compute()))
            self.delta_loss.reset()
        epoch = trainer.current_epoch + 1  # epochs trained
        if self.every_n_epochs > 0 and epoch % self.every_n_epochs == 0:
            every = self._matrix_every
            self._probe(trainer, pl_module, save_matrix=every > 0 and epoch % every == 0, epochs_trained=epoch)

    # -- work ------------------------------------------------------------------------------------------

    def _probe(self, trainer: pl.Trainer, pl_module: pl.LightningModule, save_matrix: bool = False,
               epochs_trained: int | None = None) -> None:
        step = trainer.global_step
        if self._probe_set is None or not trainer.is_global_zero:
            return
        if step == self._last_probed_step:  # an early step that is also an epoch end: probed already
            if save_matrix and self._last_matrix is not None:
                self._save_matrix(trainer, self._last_matrix)
                self._last_matrix = None  # once per step
            if self._representations is not None and epochs_trained is not None:
                self._representations.save(epochs_trained)
            return
        self._last_probed_step = step
        model: nn.Module = getattr(pl_module, "model", pl_module)
        generator = torch.Generator().manual_seed(
            int(np.random.SeedSequence([self.seed, step]).generate_state(1, np.uint64)[0])
        )
        started = time.perf_counter()
        results = compute_probes(
            model,
            *self._probe_set,
            fisher=self.fisher,
            covariance=self.covariance,
            hessian=self.hessian,
            stiffness=self.stiffness,
            covariance_batches=self._covariance_batches,
            chunk_size=self.chunk_size,
            generator=generator,
            hessian_start=self._hessian_vectors,
        )
        if self.hessian is not None and self.hessian.warm_start:
            self._hessian_vectors = results.hessian_eigenvectors
        metrics = dict(results.metrics)
        if self.condensation is not None:
            metrics.update(condensation_metrics(model, self.condensation))
        if self._representations is not None:
            metrics.update(self._representations.probe(model))
            if epochs_trained is not None:
                self._representations.save(epochs_trained)
        metrics[names.PROBE_SECONDS] = time.perf_counter() - started
        self._log(trainer, self._finite(metrics))
        self._last_matrix = results.stiffness_matrix
        if save_matrix and self._last_matrix is not None:
            self._save_matrix(trainer, self._last_matrix)
            self._last_matrix = None

    @staticmethod
    def _save_matrix(trainer: pl.Trainer, matrix: Tensor) -> None:
        rows = [[value if math.isfinite(value) else None for value in row] for row in matrix.tolist()]
        line = {names.STEP: trainer.global_step, names.EPOCH: trainer.current_epoch, "matrix": rows}
        path = Path(trainer.default_root_dir) / STIFFNESS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        append_row(path, line)  # one flushed line per call, like metrics.jsonl

    @staticmethod
    def _finite(metrics: Mapping[str, float]) -> dict[str, float]:
        bad = sorted(key for key, value in metrics.items() if not math.isfinite(value))
        if bad:
            warnings.warn(f"non-finite probe results logged as NaN: {', '.join(bad)}", RuntimeWarning)
        return {key: float(value) if math.isfinite(value) else float("nan") for key, value in metrics.items()}

    @staticmethod
    def _log(trainer: pl.Trainer, metrics: dict[str, float]) -> None:
        for logger in trainer.loggers:
            logger.log_metrics({**metrics, names.EPOCH: trainer.current_epoch}, step=trainer.global_step)
