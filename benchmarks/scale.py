"""Seconds and peak memory of one training step and of each probe, at ResNet-18 and All-CNN scale.

    python benchmarks/scale.py --models resnet18 all_cnn --probe-sizes 32 128 512 --out table.md
    python benchmarks/scale.py --quick            # tiny widths and sizes: a smoke check (about a minute)

CIFAR-shaped random tensors (3 x 32 x 32, 10 classes), float32, one model at its initial weights.
Every measurement runs in a fresh subprocess (this script with ``--measure``), so its peak memory is
its own: the subprocess builds the model and the data the row needs, reads its resident set (RSS),
runs the row once, and reports the wall time, the peak RSS and the peak minus the RSS after building
(the row's own memory). On a GPU (``--device cuda``) it also reports ``torch.cuda.max_memory_allocated``
after ``reset_peak_memory_stats``. The peak RSS is the process's high-water mark (``VmHWM`` where
``/proc`` has it, else ``ru_maxrss``; the two agree here, but ``ru_maxrss`` of a process started with
vfork can inherit its parent's peak).

Rows (options as in ``conf/probes/full.yaml`` unless stated):

* one SGD training step (batch 128, momentum 0.9, train mode);
* Fisher trace, sampled (1 label per input) and exact (C backward passes);
* K from L = 25 mini-batch gradients of B = 128: its cost does not depend on the probe size (it never
  sees the probe set), so it is measured once per model;
* the per-example Gram matrix, with the per-example K and stiffness computed from it;
* lambda_H^1 by Lanczos (tolerance 1e-3, at most 100 Hessian-vector products, basis 20) and tr H by
  Hutchinson (10 Hessian-vector products);
* CKA vs the initial weights and the frequency errors, when ``critical_periods.probes`` has them (the
  per-run state, the initial kernels and the frequency filter, is built before the clock starts).

Before a subprocess starts, a row is skipped, with the reason printed, when the estimate of its
memory (``estimate_bytes``: a formula in P, the largest layer, the activations per example, N, the
chunk and L, stated in its docstring) exceeds ``--max-gb``, or when its time extrapolated from the
same row at the previous probe size exceeds ``--max-minutes``. A subprocess that runs over
2 x ``--max-minutes`` is stopped. One measurement each (no repeats: a ResNet-18 probe takes minutes
on a CPU); the seconds depend on the machine's load, which is printed with the machine at the start.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

CLASSES, IMAGE = 10, (3, 32, 32)
TRAIN_BATCH = 128
QUICK_IMAGE = (3, 16, 16)
ROWS = ("train_step", "fisher_sampled", "fisher_exact", "minibatch_k", "gram_stiffness", "lanczos",
        "hutchinson", "cka", "frequency")
SIZE_INDEPENDENT = {"train_step", "minibatch_k"}  # never see the probe set
FLOAT_BYTES = 4


@dataclass
class Setting:
    """What the rows run with; ``--quick`` shrinks everything."""

    image: tuple[int, int, int] = IMAGE
    width: int | None = None  # None: the model's default width
    train_batch: int = TRAIN_BATCH
    k_batches: int = 25  # L
    k_batch_size: int = 128  # B
    lanczos_iterations: int = 100
    lanczos_basis: int = 20
    lanczos_tolerance: float = 1e-3
    hutchinson_samples: int = 10

    @classmethod
    def quick(cls) -> "Setting":
        return cls(QUICK_IMAGE, 8, 16, 4, 8, 10, 5, 1e-3, 2)


LABELS = {
    "train_step": lambda s: f"train step (SGD, batch {s.train_batch})",
    "fisher_sampled": lambda s: "Fisher tr F, sampled (1 label)",
    "fisher_exact": lambda s: f"Fisher tr F, exact ({CLASSES} classes)",
    "minibatch_k": lambda s: f"K from L={s.k_batches} mini-batch gradients of B={s.k_batch_size}",
    "gram_stiffness": lambda s: "per-example Gram: per-example K + stiffness",
    "lanczos": lambda s: f"lambda_H^1 (Lanczos, tol {s.lanczos_tolerance:g}, <= {s.lanczos_iterations} HVPs, "
                         f"basis {s.lanczos_basis})",
    "hutchinson": lambda s: f"tr H (Hutchinson, {s.hutchinson_samples} HVPs)",
    "cka": lambda s: "CKA vs init (all layers)",
    "frequency": lambda s: "frequency errors (low/high)",
}


# -- in the measuring subprocess ------------------------------------------------------------------------


def current_rss() -> int:
    """Resident set size now, bytes (Linux ``/proc``; elsewhere the peak so far, an upper bound)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return peak_rss()


def peak_rss() -> int:
    """This process's peak RSS, bytes: ``VmHWM`` (its own address space's high-water mark) if ``/proc``
    has it, else ``ru_maxrss`` (kilobytes on Linux, bytes on macOS)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def build_model(name: str, setting: Setting):
    from critical_periods.models.cnn import AllCNN
    from critical_periods.models.resnet import ResNet18

    cls = {"resnet18": ResNet18, "all_cnn": AllCNN}[name]
    kwargs = {} if setting.width is None else {"width": setting.width}
    return cls(setting.image, CLASSES, **kwargs)


def model_shape(model, image: tuple[int, int, int], device) -> dict[str, int]:
    """P; the largest per-example gradient work of one layer, D_max (its parameters plus, for a conv,
    its unfolded input patches C_in x positions x kernel); A, the floats of all leaf-module outputs for
    one example (what backward keeps)."""
    import torch
    from torch import nn

    from critical_periods.probes import parametrised_layers

    outputs: dict[str, tuple] = {}
    inputs: dict[str, tuple] = {}
    hooks = []
    for name, module in model.named_modules():
        if not list(module.children()):
            def hook(mod, args, out, name=name):
                outputs[name] = tuple(out.shape)
                inputs[name] = tuple(args[0].shape)
            hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *image, device=device))
    model.train(was_training)
    for h in hooks:
        h.remove()
    activations = sum(math.prod(shape) for shape in outputs.values())
    largest = 0
    for name, layer in parametrised_layers(model).items():
        own = sum(p.numel() for p in layer.parameters(recurse=False) if p.requires_grad)
        patches = 0
        if isinstance(layer, (nn.Conv1d, nn.Conv2d)) and name in outputs:
            patches = inputs[name][1] * math.prod(outputs[name][2:]) * math.prod(layer.kernel_size)
        largest = max(largest, own + patches)
    parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"P": parameters, "D_max": largest, "A": activations}


def estimate_bytes(row: str, shape: dict[str, int], n: int, chunk: int, setting: Setting) -> int:
    """Estimated peak RSS of a row beyond the model and its data, bytes (float32).

    With P parameters, A floats of activations per example, D_max the largest layer's per-example
    gradient work (see :func:`model_shape`), c = min(chunk, N) examples per pass, L mini-batches of B,
    in floats:

    * train step: ``2 P + 1.2 B_train A`` (gradients and momentum; the batch's activations);
    * Fisher, sampled: ``c (A + 4 D_max)`` (the chunk's graph; one layer's dense per-example gradients
      with their unfolded patches and copies, one layer at a time); exact: ``c (2 A + 4.5 D_max)``
      (also the output gradients of one class while the next class's are formed);
    * Gram + stiffness: ``k c (A + 4 D_max) + 2 N^2``, k = 1 for one chunk, 2 when there are several
      (a chunk's blocks stay alive while each later chunk is recomputed); the N x N float64 Gram;
    * K from mini-batches: ``L P + 3 min(c, B) A``: the L x P gradients, one pass, and the glibc heap's
      growth over the L passes (about 2 GB over 25 ResNet-18 passes at B = 128, not live tensors:
      with ``MALLOC_MMAP_THRESHOLD_=131072`` it disappears);
    * Lanczos: ``2 (basis + 1) P + 4 c A`` (basis vectors, and as many again during a restart; the
      double-backward graph of one chunk, kept between products when there is one chunk);
    * Hutchinson: ``2 P + 4 c A``;
    * CKA / frequency: ``2 N A + 4 N^2`` (every layer's output on the whole probe set and a float64
      copy of one; N x N kernels).

    The coefficients were fitted to ResNet-18 and All-CNN-C at N = 32 (CPU, glibc malloc) and checked
    at N = 128 (Fisher with one chunk, the Gram with two of 64): estimate / measured was between 0.97
    and 2.0 on every row, so the estimate errs on the side of skipping.
    """
    c = min(chunk, n)
    p, a, d = shape["P"], shape["A"], shape["D_max"]
    chunks_alive = 1 if chunk >= n else 2
    floats = {
        "train_step": 2 * p + 1.2 * setting.train_batch * a,
        "fisher_sampled": c * (a + 4 * d),
        "fisher_exact": c * (2 * a + 4.5 * d),
        "gram_stiffness": chunks_alive * c * (a + 4 * d) + 2 * n * n,
        "minibatch_k": setting.k_batches * p + 3 * min(c, setting.k_batch_size) * a,
        "lanczos": 2 * (setting.lanczos_basis + 1) * p + 4 * c * a,
        "hutchinson": 2 * p + 4 * c * a,
        "cka": 2 * n * a + 4 * n * n,
        "frequency": 2 * n * a + 4 * n * n,
    }[row]
    return int(FLOAT_BYTES * floats)


class CountingOperator:
    """An operator that counts its products (Hessian-vector products for Lanczos/Hutchinson)."""

    def __init__(self, operator) -> None:
        self.operator, self.products = operator, 0
        self.shape, self.dtype, self.device = operator.shape, operator.dtype, operator.device

    def __matmul__(self, v):
        self.products += 1 if v.dim() == 1 else v.shape[1]
        return self.operator @ v


def representation_api():
    """The representation probes' functions, or None if this checkout does not have them yet."""
    try:
        from critical_periods.probes.cka import centred_gram
        from critical_periods.probes.frequency import probe_filter
        from critical_periods.probes.representation_probes import RepresentationOptions, representation_metrics
        from critical_periods.probes.representations import layer_representations
    except ImportError:
        return None
    return centred_gram, probe_filter, RepresentationOptions, representation_metrics, layer_representations


def prepare(row: str, model, n: int, chunk: int, setting: Setting, device):
    """The work of one row as a function of nothing, with its inputs built beforehand."""
    import torch
    import torch.nn.functional as F

    from critical_periods.probes import (
        FisherOptions,
        HessianOperator,
        CovarianceOptions,
        collect_probe_gradients,
        hutchinson_trace,
        minibatch_covariance_metrics,
        per_example_covariance_metrics,
        stiffness_from_gram,
        top_eigenvalues,
    )

    data = torch.Generator().manual_seed(1)

    def images(count: int):
        return torch.randn(count, *setting.image, generator=data).to(device)

    def labels(count: int):
        return (torch.arange(count) % CLASSES).to(device)

    generator = torch.Generator().manual_seed(0)
    extra: dict[str, float] = {}
    if row == "train_step":
        x, y = images(setting.train_batch), labels(setting.train_batch)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        model.train()

        def work():
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return work, extra
    if row == "minibatch_k":
        count = setting.k_batches * setting.k_batch_size
        x, y = images(count), labels(count)
        options = CovarianceOptions(batch_size=setting.k_batch_size, batches=setting.k_batches)
        return (lambda: minibatch_covariance_metrics(model, x, y, options, chunk)), extra
    x, y = images(n), labels(n)
    if row in ("fisher_sampled", "fisher_exact"):
        options = FisherOptions(samples=1, exact=row == "fisher_exact")
        return (lambda: collect_probe_gradients(model, x, y, fisher=options, chunk_size=chunk,
                                                generator=generator)), extra
    if row == "gram_stiffness":
        def work():
            gram = collect_probe_gradients(model, x, y, gram=True, chunk_size=chunk).gram
            per_example_covariance_metrics(gram)
            stiffness_from_gram(gram, y, CLASSES)

        return work, extra
    if row in ("lanczos", "hutchinson"):
        operator = CountingOperator(HessianOperator(model, x, y, chunk))

        def work():
            if row == "lanczos":
                top_eigenvalues(operator, 1, setting.lanczos_tolerance, setting.lanczos_iterations, generator,
                                setting.lanczos_basis)
            else:
                hutchinson_trace(operator, setting.hutchinson_samples, generator)
            extra["hvps"] = operator.products

        return work, extra
    api = representation_api()
    centred_gram, probe_filter, RepresentationOptions, representation_metrics, layer_representations = api
    options = RepresentationOptions(cka=row == "cka", frequency=row == "frequency")
    # per-run state, built once per run by the callback: not timed
    initial = {k: centred_gram(v.float()) for k, v in layer_representations(model, x, chunk).items()} \
        if row == "cka" else None
    low_pass = probe_filter(x) if row == "frequency" else None
    return (lambda: representation_metrics(model, x, y, options, initial, chunk, low_pass)), extra


def measure(spec: dict) -> dict:
    """Run one row in this process; the result as a dict (seconds, bytes)."""
    import torch

    setting = Setting(**{k: tuple(v) if k == "image" else v for k, v in spec["setting"].items()})
    device = torch.device(spec["device"])
    torch.manual_seed(0)
    model = build_model(spec["model"], setting).to(device)
    shape = model_shape(model, setting.image, device)
    if spec.get("shape_only"):
        return shape
    n, chunk = spec["probe_size"] or setting.k_batch_size, spec["chunk"]
    result = {**shape, "estimate_bytes": estimate_bytes(spec["row"], shape, n, chunk, setting)}
    work, extra = prepare(spec["row"], model, n, chunk, setting, device)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        result["cuda_base_bytes"] = torch.cuda.memory_allocated(device)
    result["rss_base_bytes"], result["rss_peak_before_bytes"] = current_rss(), peak_rss()
    started = time.perf_counter()
    work()
    if cuda:
        torch.cuda.synchronize(device)
    result["seconds"] = time.perf_counter() - started
    result["rss_peak_bytes"] = peak_rss()
    result["ru_maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # raw, to check against VmHWM
    if cuda:
        result["cuda_peak_bytes"] = torch.cuda.max_memory_allocated(device)
    result.update(extra)
    return result


# -- in the driving process (no torch imported here: its memory would not matter, but stays small) -------


def machine_line() -> str:
    probe = ("import torch, os; print(torch.__version__, torch.get_num_threads(), "
             "torch.cuda.is_available())")
    version, threads, cuda = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                            check=True).stdout.split()
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return (f"{platform.node()}: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
            f"Python {platform.python_version()}, torch {version} ({threads} intra-op threads, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}), CUDA available: {cuda}; "
            f"load average (1, 5, 15 min): {load}")


def run_child(spec: dict, timeout: float) -> dict:
    command = [sys.executable, __file__, "--measure", json.dumps(spec)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"stopped after {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {done.returncode}: {tail}"}
    return json.loads(lines[-1].removeprefix("RESULT "))


def work_units(row: str, n: int, chunk: int) -> float:
    """Relative amount of work at probe size n: examples passed forward and backward. The Gram matrix
    recomputes every later chunk against each chunk: n + c (c - 1) / 2 chunk-passes of ``chunk``."""
    if row == "gram_stiffness":
        c = math.ceil(n / chunk)
        return n + min(chunk, n) * c * (c - 1) / 2
    return n


def gigabytes(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e9:.2f}"


def format_table(records: list[dict], cuda: bool) -> str:
    head = "| model | P | probe | probe size | chunk | seconds | peak RSS delta GB | peak RSS GB | estimate GB |"
    rule = "|---|---:|---|---:|---:|---:|---:|---:|---:|"
    if cuda:
        head += " CUDA max allocated GB |"
        rule += "---:|"
    lines = [head, rule]
    for r in records:
        size = "-" if r["probe_size"] is None else str(r["probe_size"])
        if "error" in r or "skipped" in r:
            note = r.get("skipped") or r["error"]
            cells = [r["model"], f"{r.get('P', 0):,}", r["label"], size, str(r["chunk"]), f"not run: {note}",
                     "", "", gigabytes(r.get("estimate_bytes"))]
        else:
            seconds = f"{r['seconds']:.1f}" + (f" ({r['hvps']} HVPs)" if "hvps" in r else "")
            cells = [r["model"], f"{r['P']:,}", r["label"], size, str(r["chunk"]), seconds,
                     gigabytes(r["rss_peak_bytes"] - r["rss_base_bytes"]), gigabytes(r["rss_peak_bytes"]),
                     gigabytes(r["estimate_bytes"])]
        if cuda:
            cells.append(gigabytes(r.get("cuda_peak_bytes", 0) - r.get("cuda_base_bytes", 0))
                         if "cuda_peak_bytes" in r else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "all_cnn"], choices=["resnet18", "all_cnn"])
    parser.add_argument("--probe-sizes", nargs="+", type=int, default=[32, 128, 512])
    parser.add_argument("--chunk-size", type=int, default=512,
                        help="examples per forward/backward pass (default 512, conf/probes/*.yaml's)")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--quick", action="store_true", help="width 8, 16 x 16 images, probe sizes 8 16")
    parser.add_argument("--max-gb", type=float, default=16.0, help="skip a row whose memory estimate exceeds this")
    parser.add_argument("--max-minutes", type=float, default=15.0,
                        help="skip a row whose extrapolated time exceeds this; stop one at twice this")
    parser.add_argument("--out", default=None,
                        help="also write the markdown table to this file, and every number to OUT.json")
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # internal: one row, in a subprocess
    args = parser.parse_args()
    if args.measure is not None:
        print("RESULT " + json.dumps(measure(json.loads(args.measure))), flush=True)
        return

    for name, value in (("--chunk-size", args.chunk_size), *(("--probe-sizes", s) for s in args.probe_sizes)):
        if value < 1:
            raise SystemExit(f"{name}={value} is not allowed: it must be a whole number >= 1")
    setting = Setting.quick() if args.quick else Setting()
    sizes = [8, 16] if args.quick else sorted(args.probe_sizes)
    print(machine_line(), flush=True)
    rows = list(args.rows)
    if not representation_available():
        rows = [r for r in rows if r not in ("cka", "frequency")]
        print("CKA and frequency rows left out: this checkout has no critical_periods.probes.representation_probes")
    records: list[dict] = []
    for model in args.models:
        shape = run_child({"model": model, "device": args.device, "setting": asdict(setting), "shape_only": True},
                          timeout=300)
        if "error" in shape:
            raise SystemExit(f"building {model} failed: {shape['error']}")
        for row in rows:
            previous: dict | None = None
            for size in [None] if row in SIZE_INDEPENDENT else sizes:
                spec = {"model": model, "row": row, "probe_size": size, "chunk": args.chunk_size,
                        "device": args.device, "setting": asdict(setting)}
                passes = {"train_step": None, "minibatch_k": setting.k_batch_size}.get(row, size)
                chunk = "-" if passes is None else min(args.chunk_size, passes)  # examples per pass
                record = {"model": model, "label": LABELS[row](setting), "probe_size": size, "chunk": chunk}
                n = size or setting.k_batch_size
                record.update(shape, estimate_bytes=estimate_bytes(row, shape, n, args.chunk_size, setting))
                reason = skip_reason(row, size, args, record, previous)
                if reason:
                    record["skipped"] = reason
                else:
                    record.update(run_child(spec, timeout=2 * 60 * args.max_minutes))
                    if "error" not in record:
                        previous = record
                records.append(record)
                print(format_table([record], args.device.startswith("cuda")).splitlines()[-1], flush=True)
    table = format_table(records, args.device.startswith("cuda"))
    footer = f"\nLoad average at the end (1, 5, 15 min): {', '.join(f'{v:.2f}' for v in os.getloadavg())}"
    print("\n" + table + footer)
    if args.out:
        with open(args.out, "w") as f:
            f.write(f"{machine_line()}\n\n{table}\n{footer}\n")
        with open(args.out + ".json", "w") as f:  # every number measured, for checking the estimates
            json.dump(records, f, indent=1)


def representation_available() -> bool:
    probe = "import critical_periods.probes.representation_probes"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


def skip_reason(row: str, size: int | None, args, estimate: dict, previous: dict | None) -> str | None:
    """Why a row is not run: its memory estimate or its extrapolated time is over the limit."""
    if estimate["estimate_bytes"] > args.max_gb * 1e9:
        return f"estimated {estimate['estimate_bytes'] / 1e9:.1f} GB > --max-gb {args.max_gb:g}"
    if previous is not None and size is not None:
        # the previous size's measured peak, scaled by the examples per pass (an upper bound when part
        # of it, like Lanczos's basis, does not grow with them)
        grown = (previous["rss_peak_bytes"] - previous["rss_base_bytes"]) * min(args.chunk_size, size) / min(
            args.chunk_size, previous["probe_size"])
        if grown > args.max_gb * 1e9:
            return (f"about {grown / 1e9:.1f} GB (measured at {previous['probe_size']}, scaled by the examples "
                    f"per pass) > --max-gb {args.max_gb:g}")
        ratio = work_units(row, size, args.chunk_size) / work_units(row, previous["probe_size"], args.chunk_size)
        seconds = previous["seconds"] * ratio
        if seconds > 60 * args.max_minutes:
            return (f"about {seconds / 60:.0f} min ({previous['seconds']:.0f} s at {previous['probe_size']} "
                    f"x {ratio:.1f} the work) > --max-minutes {args.max_minutes:g}")
    return None


if __name__ == "__main__":
    main()
