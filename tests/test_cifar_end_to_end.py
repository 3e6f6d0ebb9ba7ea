"""A real CIFAR-10 run on the CPU: official pickle files (random pixels), ResNet-18, augmentation,
every probe, through train(cfg) composed by Hydra, in a fresh process whose peak memory is measured."""

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from critical_periods.record.metrics import read_metrics

from critical_periods.record.summary import read_summary
from critical_periods.record import metric_names as names

from conftest import CONF_DIR

# Measured: 2.63 GB peak RSS for this run (ResNet-18's 11.2 M parameters; the probes hold the 16 probe
# examples' per-example gradients, 16 x 11.2 M floats = 0.7 GB, for K and the exact Fisher). The bound
# leaves a third more for allocator and library differences; it took 5.4 min on 2 shared CPU cores.
PEAK_RSS_BOUND_GB = 3.5
IMAGES_PER_FILE = 50


def write_cifar10(root: Path) -> None:
    """``root/cifar-10-batches-py`` in the official layout: five training pickles, a test pickle and
    ``batches.meta``, with random uint8 images (rows of 3072: the R, G, B planes) and labels."""
    directory = root / "cifar-10-batches-py"
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(label) for label in np.arange(IMAGES_PER_FILE) % 10],
            b"data": rng.integers(0, 256, (IMAGES_PER_FILE, 3072), dtype=np.uint8),
            b"filenames": [f"{name}_{i}.png".encode() for i in range(IMAGES_PER_FILE)],
        }
        with (directory / name).open("wb") as f:
            pickle.dump(batch, f, protocol=2)
    names_ = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with (directory / "batches.meta").open("wb") as f:
        pickle.dump({b"label_names": names_, b"num_cases_per_batch": IMAGES_PER_FILE, b"num_vis": 3072}, f, protocol=2)


RUN = textwrap.dedent(
    """
    import json, resource, sys
    from hydra import compose, initialize_config_dir
    from critical_periods.train import train

    conf_dir, data_dir, out_dir = sys.argv[1:4]
    overrides = [
        "data=cifar10", f"paths.data_dir={data_dir}", "data.augment=true", "data.batch_size=32",
        "model=resnet18", "deficit=blur", "deficit.length=1", "schedule.epochs_after_deficit=1",
        "+trainer.limit_train_batches=2", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
        "probes=full", "probes.probe_size=16", "probes.early_steps=0",
        "probes.covariance.batches=4", "probes.covariance.batch_size=16",
        "probes.hessian.max_iterations=3", "probes.hessian.trace_samples=2",
        "logger=none", f"paths.output_dir={out_dir}",
    ]
    with initialize_config_dir(conf_dir, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    summary = train(cfg)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    print(json.dumps({"status": str(summary.status), "peak_rss_gb": peak_kb / 2**20}))
    """
)


@pytest.mark.slow
def test_resnet18_on_cifar10_files_with_every_probe_completes_within_its_memory_bound(tmp_path):
    write_cifar10(tmp_path / "data")
    out_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    done = subprocess.run([sys.executable, "-c", RUN, CONF_DIR, str(tmp_path / "data"), str(out_dir)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"peak RSS {result['peak_rss_gb']:.2f} GB")
    assert result["status"] == "completed"
    assert result["peak_rss_gb"] < PEAK_RSS_BOUND_GB

    summary = read_summary(out_dir)
    assert summary["status"] == "completed" and summary["epochs_trained"] == 2
    assert summary["config"]["model"]["_target_"].endswith("ResNet18") and summary["config"]["data"]["augment"]
    rows = read_metrics(out_dir)
    logged = set().union(*rows)
    for name in (names.FISHER_TRACE, names.LAMBDA_H1, names.TRACE_H, names.VAL_DEFICIT_ACC, names.FINAL_TEST_ERROR):
        assert name in logged, name
    assert sorted(r[names.EPOCH] for r in rows if names.VAL_DEFICIT_ACC in r) == [0]  # the blur's one epoch
    assert json.loads((out_dir / "summary.json").read_text())["final/test_error"] == summary["final/test_error"]
