"""hydra/launcher=seeds: the seeds of a config trained as one vectorised model record what their
lone runs record (real Hydra multiruns in a subprocess, real Lightning training).

Tolerances: the stacked model computes each seed's forward/backward with batched kernels, whose
float32 summation order differs from the lone run's; over a few steps losses and weights agree to
1e-5 relative, and a run's first-epoch loss and Fisher trace to 1e-3 (the issue's bound)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import hydra
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from critical_periods.record.metrics import read_metrics
from critical_periods.record.summary import read_summary
from critical_periods.seeds.group import plan_groups
from critical_periods.seeds.module import per_seed_cross_entropy
from critical_periods.seeds.stacked import not_vectorisable, stack_models, stacked_forward
from critical_periods.seeds.group import prepare

from conftest import CONF_DIR, TINY, run_cli

SEEDS = "0,1,2"
BASE = [o for o in TINY if not o.startswith("model.")]
MODELS = {"mlp": ["model=mlp", "model.widths=[32]"], "conv1d": ["model=conv1d", "model.channels=8"]}
# Per-seed draws on every training batch (noise), so a mixed-up seed cannot go unnoticed.
GROUP_RUN = [*BASE, "trainer=cpu", "probes=fisher", "probes.probe_size=64", "deficit=noise",
             "checkpoint.min_seconds=0", f"seed={SEEDS}"]


def composed(*overrides: str, output_dir: Path):
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        return compose("train", overrides=[*BASE, f"paths.output_dir={output_dir}", *overrides])


def first_batches(datamodule, count: int):
    loader = datamodule.train_dataloader()
    loader.sampler.set_epoch(0)
    return [batch for _, batch in zip(range(count), loader)]


@pytest.mark.parametrize("model,optim,vmapped", [("mlp", "sgd", None), ("conv1d", "sgd", None), ("mlp", "adam", None),
                                                 ("mlp", "sgd", True), ("conv1d", "adam", True)])
def test_stacked_steps_are_each_seeds_lone_steps(tmp_path, model, optim, vmapped):
    seeds, steps = [0, 1, 2], 5  # an epoch of the tiny data
    lone, batches, factory = [], [], None
    for seed in seeds:
        cfg = composed(*MODELS[model], f"optim={optim}", f"seed={seed}", "deficit=none", output_dir=tmp_path)
        pl.seed_everything(seed, verbose=False)
        datamodule, _, module, _ = prepare(cfg)  # the lone run's own init, as train() makes it
        lone.append(module.model)
        batches.append(first_batches(datamodule, steps))
        factory = hydra.utils.instantiate(cfg.optim)
    stacked = stack_models(lone)
    group_optimizer = factory(stacked.parameters())
    lone_optimizers = [factory(m.parameters()) for m in lone]
    for step in range(steps):
        x = torch.stack([b[step][0] for b in batches])
        y = torch.stack([b[step][1] for b in batches])
        group_losses = per_seed_cross_entropy(stacked_forward(stacked, x, vmapped), y)
        group_optimizer.zero_grad()
        group_losses.sum().backward()
        group_optimizer.step()
        for s, (m, opt) in enumerate(zip(lone, lone_optimizers)):
            loss = F.cross_entropy(m(batches[s][step][0]), batches[s][step][1])
            opt.zero_grad()
            loss.backward()
            opt.step()
            assert group_losses[s].item() == pytest.approx(loss.item(), rel=1e-5)
    assert len({round(float(v), 4) for v in group_losses.detach()}) == len(seeds)  # the seeds really differ
    for s, m in enumerate(lone):
        for name, p in m.named_parameters():
            g = stacked.get_parameter(name)[s]
            assert (g - p).abs().max() <= 1e-5 * p.abs().max(), (s, name)


def test_batch_norm_and_dropout_are_not_vectorised(tmp_path):
    for overrides in (["model.batch_norm=true"], ["model.dropout=0.1"]):
        cfg = composed(*MODELS["mlp"], *overrides, output_dir=tmp_path)
        pl.seed_everything(0, verbose=False)
        assert not_vectorisable(prepare(cfg)[2].model) is not None
    assert not_vectorisable(prepare(composed(*MODELS["mlp"], output_dir=tmp_path))[2].model) is None


def test_jobs_are_grouped_when_they_differ_only_in_seed(tmp_path):
    jobs = [composed(*MODELS["mlp"], f"seed={s}", f"deficit.length={n}", output_dir=tmp_path) for n in (1, 2) for s in range(3)]
    assert plan_groups(jobs, max_group=16) == [[0, 1, 2], [3, 4, 5]]
    assert plan_groups(jobs, max_group=2) == [[0, 1], [2], [3, 4], [5]]
    with pytest.raises(ValueError, match="max_group=0 is not allowed"):
        plan_groups(jobs, max_group=0)


def job_records(sweep_dir: Path) -> dict[str, dict]:
    out = {}
    for summary_path in sorted(sweep_dir.glob("*/summary.json")):
        run = summary_path.parent
        out[run.name] = {
            "summary": read_summary(run),
            "rows": read_metrics(run),
            "hydra": {p.name: p.read_text() for p in (run / ".hydra").glob("*.yaml") if p.name != "hydra.yaml"},
            "checkpoint": torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True),
        }
    return out


def row_keys(rows: list[dict]) -> list[tuple]:
    return sorted((r["step"], r.get("epoch", -1), k) for r in rows for k in r)


def first(rows: list[dict], key: str) -> float:
    return next(r[key] for r in rows if key in r)


def without_output_dir(config: dict) -> dict:
    """The two sweeps write to different folders; everything else in the config is the same."""
    return {**config, "paths": {k: v for k, v in config["paths"].items() if k != "output_dir"}}


def structure(value):
    """A checkpoint's layout: keys, tensor shapes and dtypes, not numbers."""
    if isinstance(value, dict):
        return {k: structure(v) for k, v in value.items() if k not in ("best_model_path", "dirpath")}
    if isinstance(value, (list, tuple)):
        return [structure(v) for v in value]
    if torch.is_tensor(value):
        return ("tensor", tuple(value.shape), value.dtype)
    return type(value).__name__


def sweep(tmp_path: Path, name: str, *extra: str, seeds_launcher: bool) -> tuple[Path, subprocess.CompletedProcess]:
    sweep_dir = tmp_path / name
    if not any(e.startswith("model=") for e in extra):
        extra = (*MODELS["mlp"], *extra)
    args = ["-m", *GROUP_RUN, *extra, f"hydra.sweep.dir={sweep_dir}"]
    if seeds_launcher:
        args.append("hydra/launcher=seeds")
    done = run_cli(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return sweep_dir, done


@pytest.mark.parametrize("model", ["mlp", pytest.param("conv1d", marks=pytest.mark.slow)])
def test_a_seed_group_records_what_its_lone_runs_record(tmp_path, model):
    lone_dir, _ = sweep(tmp_path, "lone", *MODELS[model], seeds_launcher=False)
    group_dir, group_run = sweep(tmp_path, "group", *MODELS[model], seeds_launcher=True)
    assert "training 3 seeds as one vectorised model" in group_run.stderr + group_run.stdout
    lone, group = job_records(lone_dir), job_records(group_dir)
    assert sorted(group) == sorted(lone) and len(lone) == 3  # the same job folders
    for name in lone:
        a, b = lone[name], group[name]
        assert b["hydra"] == a["hydra"]  # config.yaml and overrides.yaml, byte for byte
        assert row_keys(b["rows"]) == row_keys(a["rows"])
        for key in ("train/loss", "fisher/trace"):
            assert first(b["rows"], key) == pytest.approx(first(a["rows"], key), rel=1e-3)
        summary_a, summary_b = a["summary"], b["summary"]
        assert sorted(summary_b) == sorted(summary_a)
        assert without_output_dir(summary_b["config"]) == without_output_dir(summary_a["config"])
        assert summary_b["status"] == "completed" and summary_b["seed"] == summary_a["seed"]
        assert abs(summary_b["final/test_error"] - summary_a["final/test_error"]) <= 0.03
        assert structure(b["checkpoint"]) == structure(a["checkpoint"])
    # Each seed its own: different first losses, as their lone runs have.
    assert len({first(g["rows"], "train/loss") for g in group.values()}) == 3


def test_a_rerun_of_a_finished_group_trains_nothing(tmp_path):
    group_dir, _ = sweep(tmp_path, "group", seeds_launcher=True)
    before = {p: p.read_bytes() for p in group_dir.glob("*/*") if p.is_file() and p.name != "train.log"}
    _, again = sweep(tmp_path, "group", seeds_launcher=True)
    after = {p: p.read_bytes() for p in group_dir.glob("*/*") if p.is_file() and p.name != "train.log"}
    assert after == before
    output = again.stdout + again.stderr
    assert output.count("skipped:") == 3 and "vectorised model" not in output


def test_an_unvectorisable_model_runs_its_seeds_one_after_another(tmp_path):
    group_dir, done = sweep(tmp_path, "group", "model.batch_norm=true", seeds_launcher=True)
    output = done.stdout + done.stderr
    assert output.count("cannot be vectorised") == 1
    assert [r["summary"]["status"] for r in job_records(group_dir).values()] == ["completed"] * 3


@pytest.mark.slow
def test_a_killed_group_resumes_every_seed_from_its_checkpoint(tmp_path):
    sweep_dir = tmp_path / "group"
    no_probes = [o for o in GROUP_RUN if not o.startswith("probes")]
    args = ["-m", *no_probes, *MODELS["mlp"], "probes=none", "schedule.epochs_after_deficit=150", f"hydra.sweep.dir={sweep_dir}",
            "hydra/launcher=seeds"]
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "critical_periods.train", *args], cwd=tmp_path, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def trained_epochs() -> list[int]:
        runs = list(sweep_dir.glob("*/metrics.jsonl"))
        if len(runs) < 3 or not all((r.parent / "checkpoints" / "last.ckpt").exists() for r in runs):
            return [0]
        return [len({r["epoch"] for r in read_metrics(run.parent) if "val/acc" in r}) for run in runs]

    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None and min(trained_epochs()) < 3:
        time.sleep(0.1)
    assert process.poll() is None, "the group ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert {read_summary(p.parent)["status"] for p in sweep_dir.glob("*/summary.json")} == {"running"}

    resumed = run_cli(*args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for summary_path in sweep_dir.glob("*/summary.json"):
        summary = read_summary(summary_path.parent)
        assert summary["status"] == "completed" and summary["resumed_from_epoch"] >= 1
        val_epochs = [r["epoch"] for r in read_metrics(summary_path.parent) if "val/acc" in r]
        assert val_epochs == list(range(summary["epochs"]))  # every epoch once


@pytest.mark.slow
def test_a_branching_sweep_of_seed_groups_records_what_the_basic_launcher_records(tmp_path):
    # Two seeds of a removal sweep: each length's group starts from the branch points the previous
    # length's group saved (each seed its own), as each lone job starts from its sibling's.
    from critical_periods.sweep.branch_store import BranchStore

    grid = (*[o for o in GROUP_RUN if not o.startswith("seed=")], *MODELS["mlp"], "seed=0,1",
            "deficit.length=0,1,2,3", "schedule.epochs_after_deficit=2")
    runs, output = {}, {}
    for name, launcher in (("group", ["hydra/launcher=seeds"]), ("lone", [])):
        done = run_cli("-m", *grid, *launcher, f"hydra.sweep.dir={tmp_path / name}", cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[name], output[name] = job_records(tmp_path / name), done.stdout + done.stderr
        assert BranchStore(tmp_path / name).points() == {}  # every point pruned once no pending job needed it
    assert output["group"].count("training 2 seeds as one vectorised model") == 4
    group, lone = runs["group"], runs["lone"]
    assert sorted(group) == sorted(lone) and len(lone) == 8
    taken = {}
    for name in lone:
        a, b = lone[name]["summary"], group[name]["summary"]
        assert b["status"] == a["status"] == "completed"
        assert b["branched_from_epoch"] == a["branched_from_epoch"], name
        taken[b["seed"], b["length"]] = b["branched_from_epoch"]
        assert row_keys(group[name]["rows"]) == row_keys(lone[name]["rows"]), name
        for got, expected in zip(group[name]["rows"], lone[name]["rows"]):
            assert {k: v for k, v in got.items() if k != "probe/seconds"} == pytest.approx(
                {k: v for k, v in expected.items() if k != "probe/seconds"}, rel=1e-3, abs=1e-6), name
        assert b["final/test_error"] == pytest.approx(a["final/test_error"], abs=0.03)
    # Each length takes the previous length's deficit epochs, for both seeds.
    assert [taken[s, n] for s in (0, 1) for n in (0, 1, 2, 3)] == [None, None, 1, 2] * 2


@pytest.mark.slow
def test_slurm_seeds_submits_one_submitit_job_per_seed_group_and_records_what_the_basic_launcher_records(tmp_path):
    # hydra/launcher=local_seeds is slurm_seeds with submitit's local executor: a real submitit launch,
    # one process per group, all at once.
    grid = (*[o for o in GROUP_RUN if not o.startswith("seed=")], *MODELS["mlp"], "seed=0,1", "deficit.length=0,1")
    for name, launcher in (("submitit", ["hydra/launcher=local_seeds"]), ("lone", [])):
        done = run_cli("-m", *grid, *launcher, f"hydra.sweep.dir={tmp_path / name}", cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
    submitted = sorted((tmp_path / "submitit" / ".submitit").glob("*/*_result.pkl"))
    assert len(submitted) == 2  # two groups (the two lengths), one submitit job each
    logs = "".join(p.read_text() for p in (tmp_path / "submitit" / ".submitit").glob("*/*_log.*"))
    assert logs.count("training 2 seeds as one vectorised model") == 2
    group, lone = job_records(tmp_path / "submitit"), job_records(tmp_path / "lone")
    assert sorted(group) == sorted(lone) and len(lone) == 4
    for name in lone:
        a, b = lone[name], group[name]
        assert b["hydra"] == a["hydra"] and b["summary"]["status"] == "completed"
        assert row_keys(b["rows"]) == row_keys(a["rows"])
        for key in ("train/loss", "fisher/trace"):
            assert first(b["rows"], key) == pytest.approx(first(a["rows"], key), rel=1e-3)
        assert sorted(b["summary"]) == sorted(a["summary"])
        assert abs(b["summary"]["final/test_error"] - a["summary"]["final/test_error"]) <= 0.03
        assert structure(b["checkpoint"]) == structure(a["checkpoint"])


def test_slurm_seeds_composes_with_the_slurm_keys(tmp_path):
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm_seeds", "hydra.launcher.partition=gpu",
                                          "hydra.launcher.max_group=4", f"hydra.sweep.dir={tmp_path}"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmSeedsLauncher") and launcher.max_group == 4 and launcher.partition == "gpu"
    assert launcher.max_num_timeout == 3 and launcher.submitit_folder == f"{tmp_path}/.submitit/%j"


PROBE_KEYS = ("stiffness/", "cka/", "frequency/", "curvature/", "break_even/")


@pytest.mark.slow
def test_the_non_fisher_probes_of_a_grouped_seed_are_its_lone_runs(tmp_path):
    # Stiffness, CKA, the frequency errors and the break-even probes (lambda_H^1 by Lanczos, K), at the
    # start, at early steps and after every epoch of a 2-epoch run, for each seed of a group of two.
    probes = ("probes=full", "probes.probe_size=64", "probes.early_steps=3", "probes.early_until_step=6",
              "probes.covariance.batches=4")
    grid = (*[o for o in GROUP_RUN if not o.startswith(("seed=", "probes"))], *MODELS["mlp"], *probes, "seed=0,1")
    started = time.perf_counter()
    for name, launcher in (("group", ["hydra/launcher=seeds"]), ("lone", [])):
        done = run_cli("-m", *grid, *launcher, f"hydra.sweep.dir={tmp_path / name}", cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        if name == "group":
            group_wall = time.perf_counter() - started
            assert "training 2 seeds as one vectorised model" in done.stdout + done.stderr
    group, lone = job_records(tmp_path / "group"), job_records(tmp_path / "lone")
    assert sorted(group) == sorted(lone) and len(lone) == 2
    compared = set()
    for name in lone:
        assert row_keys(group[name]["rows"]) == row_keys(lone[name]["rows"])
        for got, expected in zip(group[name]["rows"], lone[name]["rows"]):
            for key, value in expected.items():
                if key.startswith(PROBE_KEYS) and not key.endswith("seconds") and isinstance(value, float):
                    assert got[key] == pytest.approx(value, rel=1e-3, abs=1e-5), (name, got["step"], key)
                    compared.add(key.split("/")[0])
        stiffness = [json.loads(line) for line in (tmp_path / "group" / name / "stiffness.jsonl").read_text().splitlines()]
        alone = [json.loads(line) for line in (tmp_path / "lone" / name / "stiffness.jsonl").read_text().splitlines()]
        assert len(stiffness) == len(alone) > 1
        # fit_seconds: the seed's probes plus its share of the rest; the seeds' add up to the group's fit
        assert 0 < group[name]["summary"]["fit_seconds"] < group_wall
    assert {"stiffness", "cka", "frequency", "curvature", "break_even"} <= compared
    seconds = [group[n]["summary"]["fit_seconds"] for n in sorted(group)]
    assert sum(seconds) < group_wall and len(set(seconds)) == 2  # each seed charged its own probes' time
