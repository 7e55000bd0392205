"""Speed and memory of ``iw_log_likelihood`` against a hand-written PyTorch IWAE estimator.

Same network (``bernoulli_mlp`` + ``gaussian_mlp`` defaults: Pyro's VAE example), same data
batches, same particle chunks, one process, runs interleaved. Pyro's own
``vectorized_importance_weights`` is timed too; it returns one joint weight per particle
for the whole batch, not per data point. Prints data points per second and the peak extra
memory of each, and their ratios to the reference (throughput: higher is better; memory:
lower is better). Peak memory is the resident-set high-water mark on the CPU, reset before
each run with ``/proc/self/clear_refs``, and ``torch.cuda.max_memory_allocated`` on CUDA.
Timings run first, with the default allocator; the memory runs come after, with every CPU
buffer over 1 MiB forced to mmap so that freed memory leaves the process and the
high-water mark sees each run's own peak.

``ours, default`` is ``iw_log_likelihood`` with its defaults (``fast="auto"``: compiled
only when the main chunk shape recurs often enough to pay for compiling).

    python benchmarks/bench_eval.py                  # K = 100, 1000, 5000; 200 test points
    python benchmarks/bench_eval.py --paths "ours, default" --threads 1 2 --no-memory
    python benchmarks/bench_eval.py --points 1000 --device cuda
"""

from __future__ import annotations

import argparse
import ctypes
import math
import os
import statistics
import time
from pathlib import Path

import pyro
import torch
from provenance import write_table
from pyro.infer.importance import vectorized_importance_weights
from torch.nn import functional as F

from guides import make_guide
from inference import load_dataset
from inference.marginal import default_sizes, iw_log_likelihood
from models import make_model

LOG_2PI = math.log(2 * math.pi)


@torch.no_grad()
def reference_iwae(model, guide, x, num_samples, batch, chunk):
    """Hand-written per-point IWAE estimate with the same network and chunking."""
    out = []
    for xb in x.split(batch):
        loc, raw = guide.head(guide.trunk(xb)).chunk(2, -1)  # (B, d)
        scale = F.softplus(raw) + 1e-5
        lse = None
        for start in range(0, num_samples, chunk):
            k = min(chunk, num_samples - start)
            eps = torch.randn(k, *loc.shape, device=x.device)
            z = loc + scale * eps  # (k, B, d)
            logits = model.decoder(z)  # (k, B, D)
            log_px = -F.binary_cross_entropy_with_logits(
                logits, xb.expand_as(logits), reduction="none").sum(-1)
            log_pz = (-0.5 * z**2 - 0.5 * LOG_2PI).sum(-1)
            log_qz = (-0.5 * eps**2 - scale.log() - 0.5 * LOG_2PI).sum(-1)
            part = torch.logsumexp(log_px + log_pz - log_qz, 0)  # (B,)
            lse = part if lse is None else torch.logaddexp(lse, part)
        out.append(lse - math.log(num_samples))
    return torch.cat(out)


@torch.no_grad()
def pyro_vectorized(model, guide, x, num_samples, batch, chunk):
    """Pyro's vectorized_importance_weights: a joint weight per particle for each batch."""
    out = []
    for xb in x.split(batch):
        lse = None
        for start in range(0, num_samples, chunk):
            k = min(chunk, num_samples - start)
            lw, _, _ = vectorized_importance_weights(model, guide, xb, num_samples=k,
                                                     max_plate_nesting=1)
            part = torch.logsumexp(lw, 0)
            lse = part if lse is None else torch.logaddexp(lse, part)
        out.append(lse - math.log(num_samples))
    return torch.stack(out)


class PeakMemory:
    """Peak extra memory of a block, in MiB (RSS high-water mark on CPU, allocator on CUDA)."""

    def __init__(self, device: torch.device):
        self.device = device
        if device.type == "cpu":  # mmap every buffer over 1 MiB so that free returns it
            ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD

    def _rss(self, key: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"{key} not in /proc/self/status")

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            self.base = self._rss("VmRSS")
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        else:
            peak = self._rss("VmHWM")
        self.mib = (peak - self.base) / 2**20


def seconds(fn, device) -> float:
    pyro.set_rng_seed(0)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def peak_mib(fn, device) -> float:
    pyro.set_rng_seed(0)
    with PeakMemory(device) as mem:
        fn()
    return mem.mib


def paths(model, guide, x, k: int, batch: int, chunk: int, which: list[str]) -> dict:
    """The estimators timed at K = ``k``: the reference and the paths asked for."""
    ours = lambda fast: lambda: iw_log_likelihood(model, guide, x, num_samples=k,  # noqa: E731
                                                  fast=fast)
    runs = {"reference": lambda: reference_iwae(model, guide, x, k, batch, chunk),
            "ours, default": ours("auto"), "ours, fast=off": ours(False),
            "ours, fast=compile": ours("compile"),
            "pyro_vectorized": lambda: pyro_vectorized(model, guide, x, k, batch, chunk)}
    return {name: fn for name, fn in runs.items() if name == "reference" or name in which}


def measure(model, guide, x, k: int, args, device) -> list[str]:
    """Table rows at K = ``k`` and the current thread count."""
    batch, chunk = default_sizes(len(x), x.shape[1], k, None, None)
    runs = paths(model, guide, x, k, batch, chunk, args.paths)
    start = time.perf_counter()
    estimates = {name: fn() for name, fn in runs.items()}  # warms every path up, compiles
    print(f"K={k}: batches of {batch} points, chunks of {chunk} particles; warm-up "
          f"(compiling included) {time.perf_counter() - start:.1f} s")
    times = {name: [] for name in runs}
    for r in range(args.repeats):  # interleaved and rotated, so drifts hit every path alike
        names = list(runs)[r % len(runs):] + list(runs)[: r % len(runs)]
        for name in names:
            times[name].append(seconds(runs[name], device))
    peaks = {}
    if args.memory:  # last: on the CPU it makes every buffer over 1 MiB an mmap
        peaks = {name: max(peak_mib(fn, device) for _ in range(2)) for name, fn in runs.items()}
    means = ", ".join(f"{name} {est.mean():.3f}" for name, est in estimates.items()
                      if name != "pyro_vectorized")  # that one is a joint bound per batch
    print(f"mean log p(x) (warm-up draws): {means}")
    rows = []
    for name in runs:
        ratios = [ref / t for t, ref in zip(times[name], times["reference"], strict=True)]
        mem = (f"{peaks[name]:.1f} | {peaks[name] / peaks['reference']:.3f}" if peaks else
               "– | –")
        rows.append(f"| {k} | {torch.get_num_threads()} | {name} | "
                    f"{len(x) / statistics.median(times[name]):.1f} | "
                    f"{statistics.median(ratios):.3f} ({min(ratios):.3f}–{max(ratios):.3f}) | "
                    f"{mem} |")
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=200, help="test points (default 200)")
    p.add_argument("--num-samples", type=int, nargs="+", default=[100, 1000, 5000],
                   help="values of K (default: 100 1000 5000)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--paths", nargs="+", choices=list(PATHS), default=list(PATHS),
                   help="estimators timed against the reference (default: all)")
    p.add_argument("--threads", type=int, nargs="+", default=None,
                   help="torch thread counts, measured in turn (default: torch's own)")
    p.add_argument("--no-memory", dest="memory", action="store_false",
                   help="skip the peak-memory runs (default: measure them)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--table", default="speed-eval", help="table name under "
                   "docs/benchmarks/tables/ (default speed-eval; 'none': print only)")
    args = p.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = make_model("bernoulli_mlp").to(device).eval()
    guide = make_guide("gaussian_mlp").to(device).eval()
    x = load_dataset("embedded", "test").x[: args.points].to(device)
    head = ("| K | threads | estimator | points/s | throughput vs reference (median, range) | "
            "peak MiB | memory vs reference |\n| --- | --- | --- | --- | --- | --- | --- |")
    print(f"{args.points} points on {device}, load {os.getloadavg()[0]:.2f}, median of "
          f"{args.repeats} interleaved rounds\n{head}")
    rows = []
    for threads in args.threads or [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        for k in args.num_samples:
            rows += measure(model, guide, x, k, args, device)
    print(f"load at the end {os.getloadavg()[0]:.2f}")
    if args.table != "none":
        write_table(args.table, head + "\n" + "\n".join(rows),
                    budget=f"{args.points} test points, {args.repeats} interleaved rounds per "
                    f"K after a warm-up that includes compiling", seeds="0")


PATHS = ["ours, default", "ours, fast=off", "ours, fast=compile", "pyro_vectorized"]

if __name__ == "__main__":
    main()
