"""Reliability of the run record: one vocabulary (statuses, result keys), one process per run folder,
signals, W&B outages, torn files and bad input. Real processes, real signals, real files."""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from critical_periods.analysis.runs import load_sweep, varying_settings
from critical_periods.vocabulary import RunStatus
from critical_periods.record.summary import Summary, read_summary, write_json_atomic
from critical_periods.record.metrics import read_metrics
from critical_periods.record.result_keys import differing_keys, flatten, is_result_key
from critical_periods.record.resume import trim_metrics
from critical_periods.record.lock import RunLock, is_held
from critical_periods.train import train
from critical_periods.config.validation import ConfigError

from wandb_records import read_offline_run
from conftest import CONF_DIR, TINY, run_cli

ENV = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}


# -- one vocabulary ---------------------------------------------------------------------------------


def every_config_key() -> set[str]:
    """Every key a user can override: config group names and every leaf of every group option."""
    conf = Path(CONF_DIR)
    groups = sorted(p.name for p in conf.iterdir() if p.is_dir() and p.name != "hydra")
    keys = set(groups)
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        for group in groups:
            for option in sorted(conf.glob(f"{group}/*.yaml")):
                cfg = compose("train", overrides=[f"{group}={option.stem}"])
                keys |= set(flatten(OmegaConf.to_container(cfg, resolve=False)))
    return keys


def test_folder_names_leave_out_exactly_the_keys_that_do_not_change_results():
    conf = yaml.safe_load((Path(CONF_DIR) / "train.yaml").read_text())
    excluded = set(conf["hydra"]["job"]["config"]["override_dirname"]["exclude_keys"])
    assert excluded == {key for key in every_config_key() if not is_result_key(key)}
    assert {"checkpoint.min_seconds", "threads", "logger", "trainer.enable_progress_bar", "name", "sweep"} <= excluded


def test_resume_check_and_analysis_conditions_follow_the_same_result_keys(tmp_path):
    base = {"optim": {"lr": 0.1}, "checkpoint": {"min_seconds": 60}, "seed": 0, "data": {"source": {"root": "a"}}}
    other = {"optim": {"lr": 0.2}, "checkpoint": {"min_seconds": 0}, "seed": 1, "data": {"source": {"root": "b"}}}
    assert differing_keys(base, other) == ["optim.lr", "seed"]

    class R:  # the two attributes varying_settings reads
        def __init__(self, config):
            self.config, self.summary = config, Summary(config=config)

    # seed is an axis of the analysis, not a condition; min_seconds and the data root change no result.
    assert varying_settings([R(base), R(other)]) == ["optim.lr"]


def test_status_is_a_closed_vocabulary_and_old_summaries_still_read():
    with pytest.raises(ValueError):
        Summary.from_json({"status": "complete"})  # a typo is an error, not a new status
    old = {"status": "completed", "final/test_error": 0.3, "config": {}, "removed_field": 1}
    summary = Summary.from_json(old)
    assert (summary.status, summary.test_error, summary.epochs_trained) == (RunStatus.COMPLETED, 0.3, None)
    # Written back with every key it had; `branched_from_epoch` is always written (null: not branched).
    assert summary.to_json() == {**old, "branched_from_epoch": None}


# -- files: modes, torn lines, failed writes -----------------------------------------------------------


def test_record_files_honour_the_umask(tmp_path):
    before = os.umask(0o027)
    try:
        write_json_atomic(tmp_path / "summary.json", {"status": "running"})
        (tmp_path / "metrics.jsonl").write_text('{"epoch": 0, "step": 1}\n')
        trim_metrics(tmp_path, 0)  # rewritten atomically
    finally:
        os.umask(before)
    assert stat.S_IMODE((tmp_path / "summary.json").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "metrics.jsonl").stat().st_mode) == 0o640


def test_a_torn_last_line_is_dropped_on_resume(tmp_path):
    rows = [{"step": 10, "epoch": 0, "val/acc": 0.5}, {"step": 20, "epoch": 1, "val/acc": 0.6},
            {"step": 20, "final/test_acc": 0.6}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 30, "epo')
    trim_metrics(tmp_path, 1)
    assert read_metrics(tmp_path) == rows[:2]  # torn line and the after-training final row gone


def test_a_failed_record_write_never_hides_the_training_error(make_cfg, tmp_path, monkeypatch):
    from critical_periods import fitting as train_module
    from critical_periods.module import ClassifierModule

    def crash(self, batch, batch_idx):
        raise RuntimeError("simulated crash")

    real_write = train_module.write_summary

    def disk_full_after_start(run_dir, summary):
        if summary.status != RunStatus.RUNNING:
            raise OSError(28, "No space left on device")
        real_write(run_dir, summary)

    monkeypatch.setattr(ClassifierModule, "training_step", crash)
    monkeypatch.setattr(train_module, "write_summary", disk_full_after_start)
    with pytest.raises(RuntimeError, match="simulated crash") as raised:
        train(make_cfg())
    assert any("No space left on device" in note for note in raised.value.__notes__)
    assert read_summary(tmp_path)["status"] == "running"


# -- one process per run folder ---------------------------------------------------------------------


def test_a_second_process_never_writes_into_a_folder_another_holds(tmp_path):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from critical_periods.record.lock import RunLock, is_held
            RunLock({str(run_dir)!r}).acquire()
            print("held", flush=True)
            time.sleep(300)
        """)], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        second = run_cli(*TINY, f"hydra.run.dir={run_dir}", cwd=tmp_path)
        assert second.returncode == 0, second.stderr[-3000:]
        assert f"held by pid {holder.pid} on host {socket.gethostname()}" in second.stdout + second.stderr
        ours = {p.name for p in run_dir.iterdir()} - {".hydra", "train.log"}  # Hydra's own files
        assert ours == {".lock"}  # no summary, no metrics, no checkpoint
    finally:
        holder.kill()  # SIGKILL: the OS drops the lock with the process
        holder.wait()
    assert is_held(run_dir) is False  # a re-run may claim it now


def test_lock_is_exclusive_between_open_files_and_released_on_exit(tmp_path):
    from critical_periods.record.lock import RunFolderBusy

    assert is_held(tmp_path) is None
    with RunLock(tmp_path):
        assert is_held(tmp_path) is True
        with pytest.raises(RunFolderBusy, match=f"held by pid {os.getpid()}"):
            RunLock(tmp_path).acquire()
    assert is_held(tmp_path) is False


# -- signals, kills and resumes: every row once, results bitwise equal ---------------------------------

RESUMABLE = [*TINY, "schedule.epochs_after_deficit=5", "checkpoint.min_seconds=0", "probes=fisher",
             "probes.probe_size=64"]
# probe/seconds is a wall time; everything else must match an uninterrupted run exactly.
TIMING = {"probe/seconds"}

# Runs the real CLI (hydra.main) in a fresh process; PATCH makes it signal or kill itself at a chosen point.
DRIVER = """
import os, runpy, signal, sys
from critical_periods.callbacks.checkpoint import ResumeCheckpoint
from critical_periods.module import ClassifierModule
how, epoch = os.environ["TEST_FAULT"].split(":")
epoch = int(epoch)
def at_epoch_start(action):  # at the start of training epoch `epoch`, as SLURM would at any time
    original = ClassifierModule.on_train_epoch_start
    def on_train_epoch_start(self):
        if self.current_epoch == epoch:
            action()
        original(self)
    ClassifierModule.on_train_epoch_start = on_train_epoch_start
if how == "sigterm":
    at_epoch_start(lambda: os.kill(os.getpid(), signal.SIGTERM))
elif how == "sigterm_owned_elsewhere":  # a SIGTERM handler of someone else's (submitit's bypass)
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    at_epoch_start(lambda: os.kill(os.getpid(), signal.SIGTERM))
elif how == "submitit_usr2":  # submitit's job handlers: SIGTERM bypassed, SIGUSR2 = requeue, then exit(-1)
    signal.signal(signal.SIGTERM, lambda signum, frame: print("bypassing SIGTERM", flush=True))
    signal.signal(signal.SIGUSR2, lambda signum, frame: sys.exit(-1))
    at_epoch_start(lambda: os.kill(os.getpid(), signal.SIGUSR2))
elif how == "kill_after_save":  # right after the checkpoint is saved, before the epoch's train row
    original = ResumeCheckpoint._save_checkpoint
    def save(self, trainer, filepath):
        original(self, trainer, filepath)
        if trainer.current_epoch == epoch:
            os.kill(os.getpid(), signal.SIGKILL)
    ResumeCheckpoint._save_checkpoint = save
sys.argv = ["train", *sys.argv[1:]]
runpy.run_module("critical_periods.train", run_name="__main__", alter_sys=True)
"""


def run_with_fault(fault: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", DRIVER, *args], cwd=cwd, env={**ENV, "TEST_FAULT": fault},
                          capture_output=True, text=True, timeout=300)


def comparable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The same run, never interrupted."""
    out = tmp_path_factory.mktemp("reference")
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[*RESUMABLE, f"paths.output_dir={out}"])
    assert train(cfg).status == RunStatus.COMPLETED
    return out


@pytest.mark.slow
def test_sigterm_twice_then_resume_gives_the_uninterrupted_record(tmp_path, reference):
    run_dir = tmp_path / "run"
    args = [*RESUMABLE, f"hydra.run.dir={run_dir}"]
    for epoch in (2, 4):
        stopped = run_with_fault(f"sigterm:{epoch}", *args, cwd=tmp_path)
        assert stopped.returncode == 143, stopped.stderr[-3000:]
        assert "Traceback" not in stopped.stderr
        summary = read_summary(run_dir)
        assert summary["status"] == "interrupted" and "StopRequested" in summary["error"]
    resumed = run_cli(*args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary, expected = read_summary(run_dir), read_summary(reference)
    assert summary["status"] == "completed" and summary["resumed_from_epoch"] == 3
    assert {k: v for k, v in summary.items() if k.startswith("final/")} == {
        k: v for k, v in expected.items() if k.startswith("final/")}
    assert comparable(read_metrics(run_dir)) == comparable(read_metrics(reference))  # every row once, bitwise


@pytest.mark.slow
def test_kill_right_after_the_checkpoint_save_and_a_torn_line_lose_no_row(tmp_path, reference):
    run_dir = tmp_path / "run"
    args = [*RESUMABLE, f"hydra.run.dir={run_dir}"]
    killed = run_with_fault("kill_after_save:2", *args, cwd=tmp_path)
    assert killed.returncode == -signal.SIGKILL
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"step": 99, "val/ac')  # as a full disk would leave it
    resumed = run_cli(*args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert read_summary(run_dir)["final/test_error"] == read_summary(reference)["final/test_error"]
    assert comparable(read_metrics(run_dir)) == comparable(read_metrics(reference))


@pytest.mark.slow
def test_submitit_requeue_signal_still_ends_the_run_as_interrupted_and_it_resumes(tmp_path, reference):
    run_dir = tmp_path / "run"
    args = [*RESUMABLE, f"hydra.run.dir={run_dir}"]
    requeued = run_with_fault("submitit_usr2:2", *args, cwd=tmp_path)
    assert requeued.returncode == 255, requeued.stderr[-3000:]  # submitit's own sys.exit(-1), untouched
    assert read_summary(run_dir)["status"] == "interrupted"
    resumed = run_cli(*args, cwd=tmp_path)  # what the requeued job runs
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert comparable(read_metrics(run_dir)) == comparable(read_metrics(reference))


@pytest.mark.slow
def test_sigterm_that_lightning_handles_still_exits_non_zero(tmp_path):
    run_dir = tmp_path / "run"
    stopped = run_with_fault("sigterm_owned_elsewhere:2", *RESUMABLE, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert stopped.returncode == 143, stopped.stderr[-3000:]  # Lightning's SIGTERMException exits 0 by itself
    assert read_summary(run_dir)["status"] == "interrupted"


@pytest.mark.slow
def test_sigterm_stops_a_multirun_with_a_non_zero_exit(tmp_path):
    sweep_dir = tmp_path / "sweep"
    stopped = run_with_fault("sigterm:1", "-m", *RESUMABLE, "seed=0,1", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    assert [read_summary(p.parent)["status"] for p in sweep_dir.glob("*/summary.json")] == ["interrupted"]


def test_a_handler_someone_else_installed_is_left_alone():
    from critical_periods.signals import stop_on_signals

    def theirs(signum, frame):  # e.g. submitit's SIGTERM bypass
        pass

    before = signal.signal(signal.SIGTERM, theirs)
    try:
        with stop_on_signals():
            assert signal.getsignal(signal.SIGTERM) is theirs
    finally:
        signal.signal(signal.SIGTERM, before)


# -- W&B down ---------------------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed once the socket is: connections are refused


@pytest.mark.slow
@pytest.mark.parametrize("case", ["no_api_key", "server_unreachable"])
def test_wandb_that_cannot_start_falls_back_and_the_run_completes(tmp_path, case):
    run_dir = tmp_path / "run"
    env = {"WANDB_MODE": "online", "HOME": str(tmp_path), "WANDB_API_KEY": "", "WANDB_CONFIG_DIR": str(tmp_path)}
    if case == "server_unreachable":
        env.update(WANDB_API_KEY="x" * 40, WANDB_BASE_URL=f"http://127.0.0.1:{closed_port()}")
    started = time.monotonic()
    result = run_cli(*TINY, "logger=wandb", "logger.wandb.init_timeout=10", f"hydra.run.dir={run_dir}", cwd=tmp_path, env=env)
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    assert "W&B could not start in online mode" in result.stderr
    assert read_summary(run_dir)["status"] == "completed"
    assert seconds < 80  # bounded by init_timeout, not W&B's 90 s default
    # The W&B copy is not lost: an offline run `wandb sync` uploads later, and the command to do it.
    (log,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    assert f"upload it with: wandb sync {log.parent}" in result.stdout + result.stderr
    assert read_offline_run(log).summary["status"] == "completed"


def test_wandb_failing_mid_run_is_dropped_with_a_warning_and_never_raises(tmp_path, monkeypatch):
    from wandb.sdk.wandb_run import Run as WandbRun

    from critical_periods.tracking.wandb_run import MirrorWandbLogger, finish_wandb

    calls = []

    def dead_service(self, data, step=None, **kwargs):
        calls.append(step)
        raise ConnectionResetError("wandb service gone")

    monkeypatch.setattr(WandbRun, "log", dead_service)  # the real run object's log, as the logger calls it
    logger = MirrorWandbLogger(save_dir=str(tmp_path), mode="offline")
    try:
        with pytest.warns(RuntimeWarning, match="W&B stopped working"):
            logger.log_metrics({"fisher/trace": 1.0}, step=1)
        logger.log_metrics({"fisher/trace": 0.5}, step=2)  # dropped: W&B is off for the rest of the run
        assert calls == [1]  # logged at the record's step
    finally:
        finish_wandb(failed=True)  # the run this test started must not outlive it


# -- bad input: one line, before the folder is claimed ------------------------------------------------------


def cifar_files(root: Path, corrupt: str) -> None:
    batches = root / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]:
        (batches / name).write_bytes(b"not a pickle" if name == corrupt else b"")


def truncated_mnist(root: Path) -> None:
    folder = root / "mnist"
    folder.mkdir(parents=True)
    for name in ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]:
        (folder / f"{name}.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 100)[:20])


def corrupt_checkpoint(run_dir: Path, cfg) -> None:
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 torn")
    config = OmegaConf.to_container(cfg, resolve=True)
    write_json_atomic(run_dir / "summary.json", Summary(status=RunStatus.INTERRUPTED, config=config).to_json())


# (overrides, setup of the data dir or run dir, what the one line must say)
BAD_INPUTS = {
    "seed=-1": (["seed=-1"], None, "seed=-1 is not allowed"),
    "threads=0": (["threads=0"], None, "threads=0 is not allowed: it must be a whole number >= 1 or null"),
    "lr=nan": (["optim.lr=nan"], None, "optim.lr=nan is not allowed: it must be a finite number in (0.0, inf]"),
    "lr=-1": (["optim.lr=-1"], None, "optim.lr=-1 is not allowed"),
    "lr=abc": (["optim.lr=abc"], None, "optim.lr='abc' is not allowed"),
    "momentum=-1": (["optim.momentum=-1"], None, "optim.momentum=-1 is not allowed: it must be a finite number in [0.0, 1.0)"),
    "eval_batch_size=0": (["data.eval_batch_size=0"], None, "data.eval_batch_size=0 is not allowed"),
    "probe_size=100000": (["probes=fisher", "probes.probe_size=100000"], None,
                          "probes.probe_size=100000 is not allowed: it must be between 1 and 720"),
    "probe_size=0": (["probes=fisher", "probes.probe_size=0"], None, "probes.probe_size=0 is not allowed"),
    "chunk_size=0": (["probes=fisher", "probes.chunk_size=0"], None, "probes.chunk_size=0 is not allowed"),
    "K batches > training set": (["probes=break_even"], None,  # 25 x 128 of the tiny set's 720 examples
                                 "probes.covariance.batches=25 is not allowed: it must be at most 5"),
    "accelerator=gpu": (["trainer.accelerator=gpu"], None, "trainer.accelerator='gpu' is not allowed"),
    "corrupt cifar pickle": (["data=cifar10"], lambda d, r, c: cifar_files(d, "data_batch_1"),
                             "data_batch_1: not a CIFAR batch pickle"),
    "corrupt cifar tar": (["data=cifar10"], lambda d, r, c: (d.mkdir(), (d / "cifar-10-python.tar.gz").write_bytes(b"junk")),
                          "cifar-10-python.tar.gz: corrupt archive"),
    "truncated mnist gz": (["data=mnist"], lambda d, r, c: truncated_mnist(d), "train-images-idx3-ubyte.gz: corrupt gzip file"),
    "data dir is a file": (["data=mnist"], lambda d, r, c: d.write_text("a file"), "is not a directory"),
    "missing data": (["data=cifar10"], lambda d, r, c: d.mkdir(), "data.source.download=true"),
    "corrupt checkpoint": ([], lambda d, r, c: corrupt_checkpoint(r, c), "last.ckpt: unreadable checkpoint"),
    "corrupt summary": ([], lambda d, r, c: (r.mkdir(), (r / "summary.json").write_text("[1, 2")), "summary.json: not a readable"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_config_error_before_the_folder_is_claimed(tmp_path, case):
    overrides, setup, message = BAD_INPUTS[case]
    data_dir, run_dir = tmp_path / "data", tmp_path / "run"
    other_data = any(o.startswith("data=") for o in overrides)
    tiny = [o for o in TINY if not (other_data and o.startswith("data."))]
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[*tiny, *overrides, f"paths.data_dir={data_dir}", f"paths.output_dir={run_dir}"])
    if setup is not None:
        setup(data_dir, run_dir, cfg)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) if tmp_path.exists() else []
    with pytest.raises(ValueError) as raised:  # ConfigError and ResumeError are ValueErrors
        train(cfg)
    assert message in str(raised.value) and "\n" not in str(raised.value)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written, no lock
    if case.startswith(("seed", "lr", "probe", "chunk")):
        assert isinstance(raised.value, ConfigError)


@pytest.mark.parametrize("args", [["seed=-1"], ["data=cifar10", "paths.data_dir=nowhere"], ["-m", "seed=0,-1"]])
def test_cli_bad_input_prints_one_line_and_exits_2(tmp_path, args):
    tiny = [o for o in TINY if not ("data=cifar10" in args and o.startswith("data."))]
    flags, overrides = [a for a in args if a == "-m"], [a for a in args if a != "-m"]
    result = run_cli(*flags, *tiny, *overrides, f"hydra.run.dir={tmp_path}/run", f"hydra.sweep.dir={tmp_path}/sweep",
                     cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert not list(tmp_path.rglob("summary.json"))  # a multirun's grid is checked before its first job


# -- the analysis reads what it can and says what it skipped -------------------------------------------------


def test_analysis_skips_unreadable_summaries_and_names_jobs_that_never_started(tmp_path):
    def job(name: str, summary_text: str | None = None, lock: bool = False) -> Path:
        path = tmp_path / name
        (path / ".hydra").mkdir(parents=True)
        (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([name]))
        (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": 0}))
        if summary_text is not None:
            (path / "summary.json").write_text(summary_text)
        if lock:
            (path / ".lock").write_text("")  # left by a process that is gone
        return path

    job("torn", '{"status": "compl')
    job("a_list", "[1, 2]")
    job("rejected")
    job("killed", json.dumps({"status": "running", "config": {}}), lock=True)
    runs = {r.job: r for r in load_sweep(tmp_path)}
    assert {name: r.status for name, r in runs.items()} == {
        "torn": RunStatus.NOT_STARTED, "a_list": RunStatus.NOT_STARTED, "rejected": RunStatus.NOT_STARTED,
        "killed": RunStatus.INTERRUPTED,
    }
    assert any(str(tmp_path / "torn" / "summary.json") in note for note in runs["torn"].notes)
    assert any(str(tmp_path / "a_list" / "summary.json") in note for note in runs["a_list"].notes)
