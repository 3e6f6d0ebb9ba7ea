"""The per-epoch progress line: written to stderr when it is not a terminal, with the run's numbers."""

import io
import re

import pytorch_lightning as pl
import torch

from critical_periods.callbacks.probes import ProbeCallback
from critical_periods.callbacks.progress import EpochProgress
from critical_periods.data.datamodule import DeficitDataModule
from critical_periods.data.deficits import Blur
from critical_periods.data.digits import load_digits
from critical_periods.record.metric_names import EPOCH, FISHER_TRACE, LAMBDA_H1, LR, TRAIN_LOSS, VAL_ACC
from critical_periods.models.cnn import SimpleCNN
from critical_periods.module import ClassifierModule
from critical_periods.probes import FisherOptions, HessianOptions
from critical_periods.record.metrics import RunRecordLogger, read_metrics
from critical_periods.schedule import LrFactor

LINE = re.compile(
    r"^epoch (?P<epoch>\d+)/3: train loss (?P<loss>\d+\.\d{3}), error \d+\.\d% \| val error (?P<val>\d+\.\d)% "
    r"\| lr (?P<lr>[0-9.e-]+) \| deficit (?P<deficit>on|off) \| Fisher trace (?P<fisher>[0-9.e+-]+) "
    r"\| lambda_H\^1 (?P<lambda>[0-9.e+-]+) \| \d+\.\d s/epoch$"
)


def fit(tmp_path, progress, enable_progress_bar=False):
    datamodule = DeficitDataModule(load_digits, Blur(onset=0, length=2), batch_size=256, seed=0)
    datamodule.setup()
    torch.manual_seed(0)
    module = ClassifierModule(SimpleCNN(datamodule.input_shape, 10, channels=[4], hidden=8), 10,
                              lambda p: torch.optim.SGD(p, lr=0.1), LrFactor("exponential", gamma=0.5))
    probes = ProbeCallback(seed=0, probe_size=20, fisher=FisherOptions(exact=True),
                           hessian=HessianOptions(trace_samples=0))
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", logger=RunRecordLogger(tmp_path), enable_progress_bar=enable_progress_bar,
                         enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0,
                         log_every_n_steps=1, callbacks=[probes, progress])
    trainer.fit(module, datamodule=datamodule)
    return trainer


def test_one_line_per_epoch_on_stderr_with_the_logged_numbers(tmp_path, capsys):
    fit(tmp_path, EpochProgress())
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3, lines
    matches = [LINE.match(line) for line in lines]
    assert all(matches), lines
    rows = read_metrics(tmp_path)
    for epoch, match in enumerate(matches):
        logged = {}
        for row in rows:  # the last value of each name in this epoch, as the run record has it
            if row.get(EPOCH) == epoch:
                logged.update(row)
        assert int(match["epoch"]) == epoch + 1
        assert match["deficit"] == ("on" if epoch < 2 else "off")
        assert float(match["loss"]) == round(logged[TRAIN_LOSS], 3)
        assert float(match["val"]) == round(100 * (1 - logged[VAL_ACC]), 1)
        assert float(match["lr"]) == float(f"{logged[LR]:.3g}") == float(f"{0.1 * 0.5 ** epoch:.3g}")
        assert float(match["fisher"]) == float(f"{logged[FISHER_TRACE]:.4g}")
        assert float(match["lambda"]) == float(f"{logged[LAMBDA_H1]:.4g}")


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_nothing_is_written_to_a_terminal(tmp_path):
    terminal = Terminal()
    fit(tmp_path, EpochProgress(stream=terminal))
    assert terminal.getvalue() == ""


def test_on_a_terminal_the_progress_bar_shows_train_loss_val_error_and_fisher_trace(tmp_path, capsys):
    terminal = Terminal()
    progress = EpochProgress(stream=terminal)
    trainer = fit(tmp_path, progress, enable_progress_bar=True)
    rows = read_metrics(tmp_path)
    last = {}
    for row in rows:
        last.update(row)
    shown = trainer.progress_bar_callback.get_metrics(trainer, trainer.lightning_module)
    assert shown["train loss"] == f"{last[TRAIN_LOSS]:.3f}"
    assert shown["val error"] == f"{100 * (1 - last[VAL_ACC]):.1f}%"
    assert shown["Fisher trace"] == f"{last[FISHER_TRACE]:.4g}"
    # ... and the bar drew them: tqdm's last training line carries the three
    drawn = capsys.readouterr()
    bar_text = drawn.out + drawn.err
    assert re.search(r"train loss=\d+\.\d{3}, val error=\d+\.\d%, Fisher trace=[0-9.e+-]+", bar_text), bar_text[-500:]
    assert terminal.getvalue() == ""  # no epoch lines on a terminal
