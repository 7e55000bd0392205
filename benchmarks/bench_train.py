"""Speed of one training step: our ``fit`` step against a hand-written PyTorch step.

Same network (``bernoulli_mlp`` + ``gaussian_mlp`` defaults: Pyro's VAE example,
784-400-50, softplus), same estimator, same optimizer (torch Adam, lr 1e-3), same data,
one process. Protocol: every path is built once (graphs captured and compiled before any timing); in
every round each path restarts from the same initial weights and a fresh optimizer and runs
the same sequence of real MNIST batches (warm-up steps first); the
rounds interleave the paths (rotating their order), and each path's time is divided by the
reference's time of the same round; the median of these paired ratios (and their range) is
reported, which cancels the slow drifts of a shared machine. Denormal floats
are flushed to zero for every path: otherwise a path that has drifted into denormals
measures the CPU's slow path, not our code.

Paths: ``fit default`` is what ``fit`` runs with its defaults (``fast="auto"``: on a CPU the
joint forward-backward graph, and fused Adam, :func:`inference.train.default_optimizer`);
``fast=off`` is Pyro's own objective (same optimizer); ``fast=compile`` adds inductor. The
hand-written reference uses ``torch.optim.Adam`` as a user would write it.

    python benchmarks/bench_train.py                          # CPU, batch 20, 128 and 1024
    python benchmarks/bench_train.py --paths default --threads 1 2 --rounds 7
    python benchmarks/bench_train.py --device cuda --batch-sizes 128 1024
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import time

import pyro
import torch
from provenance import write_table
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from torch.nn import functional as F

from guides import make_guide
from inference import capture, load_dataset
from inference.train import Trainer, default_optimizer, parameters
from models import make_model

LOG_2PI = math.log(2 * math.pi)


def reference_loss(model, guide, x, analytic_kl: bool):
    """Hand-written -ELBO summed over the batch: one reparameterized z per point."""
    loc, raw = guide.head(guide.trunk(x)).chunk(2, -1)  # (B, d) each
    scale = F.softplus(raw) + 1e-5
    eps = torch.randn_like(loc)
    z = loc + scale * eps
    log_px = -F.binary_cross_entropy_with_logits(model.decoder(z), x, reduction="none").sum(-1)
    if analytic_kl:
        kl = 0.5 * (scale**2 + loc**2 - 1).sum(-1) - scale.log().sum(-1)
    else:  # log q(z|x) - log p(z), with z - loc = scale * eps
        kl = (-0.5 * eps**2 - scale.log() + 0.5 * z**2).sum(-1)
    return -(log_px - kl).sum()


class Reference:
    def __init__(self, model, guide, analytic_kl):
        self.model, self.guide, self.analytic_kl = model, guide, analytic_kl
        self.initial = copy.deepcopy((model.state_dict(), guide.state_dict()))
        self.reset()

    def reset(self):
        """Initial weights (copied in place) and a fresh optimizer."""
        self.model.load_state_dict(self.initial[0])
        self.guide.load_state_dict(self.initial[1])
        params = [*self.model.decoder.parameters(), *self.guide.trunk.parameters(),
                  *self.guide.head.parameters()]
        self.opt = torch.optim.Adam(params, lr=1e-3)

    def step(self, x):
        loss = reference_loss(self.model, self.guide, x, self.analytic_kl)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return loss.detach()


class Ours:
    def __init__(self, model, guide, loss, **trainer_kwargs):
        opt = default_optimizer(parameters(model, guide), lr=1e-3)
        self.trainer = Trainer(model, guide, loss, opt, seed=0, clip_norm=None, progress=False,
                               **trainer_kwargs)
        self.initial = copy.deepcopy((model.state_dict(), guide.state_dict()))
        if self.trainer.fast.active:
            capture.CAPTURE_AFTER = 1  # graphs are built in the first round's warm-up

    def reset(self):
        """Initial weights (copied in place: captured graphs keep their tensors) and a
        fresh optimizer."""
        self.trainer.model.load_state_dict(self.initial[0])
        self.trainer.guide.load_state_dict(self.initial[1])
        params = parameters(self.trainer.model, self.trainer.guide)
        self.trainer.optimizer = default_optimizer(params, lr=1e-3)

    def step(self, x):
        with pyro.validation_enabled(False):
            return self.trainer.step(x, None)


def time_steps(path, batches, warmup: int) -> float:
    for x in batches[:warmup]:
        path.step(x)
    sync = torch.cuda.synchronize if batches[0].is_cuda else (lambda: None)
    sync()
    start = time.perf_counter()
    for x in batches[warmup:]:
        last = path.step(x)
    last.item()  # one read at the end, as fit reads its running loss
    sync()
    return (time.perf_counter() - start) / (len(batches) - warmup) * 1000


PATHS = {"default": ("fit default", "auto"), "off": ("fit, fast=off", False),
         "compile": ("fit, fast=compile", "compile")}


def make_paths(kind: str, model, guide, which: list[str]) -> dict:
    """Fresh copies of the same initial weights for each path of one objective."""
    fresh = lambda: (copy.deepcopy(model), copy.deepcopy(guide))  # noqa: E731
    loss, analytic = (Trace_ELBO, False) if kind == "Trace_ELBO" else (TraceMeanField_ELBO, True)
    paths = {"reference": Reference(*fresh(), analytic_kl=analytic)}
    for key in which:
        name, fast = PATHS[key]
        paths[name] = Ours(*fresh(), loss(), fast=fast)
    return paths


def measure(kind: str, b: int, data, model, guide, args) -> list[str]:
    """Table rows of one objective and batch size at the current thread count."""
    batches = list(data[: b * (args.steps + args.warmup)].split(b))
    times: dict[str, list[float]] = {}
    paths = list(make_paths(kind, model, guide, args.paths).items())
    for _, path in paths:  # build graphs and compile before any timing
        time_steps(path, batches[: args.warmup + 1], args.warmup)
    for r in range(args.rounds):
        for name, path in paths[r % len(paths):] + paths[: r % len(paths)]:  # rotate
            path.reset()
            torch.manual_seed(1)
            times.setdefault(name, []).append(time_steps(path, batches, args.warmup))
    rows = []
    for name, ts in times.items():
        ratios = [t / ref for t, ref in zip(ts, times["reference"], strict=True)]
        rows.append(f"| {kind} | {b} | {torch.get_num_threads()} | {name} | "
                    f"{statistics.median(ts):.3f} | {statistics.median(ratios):.3f} "
                    f"({min(ratios):.3f}–{max(ratios):.3f}) |")
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[20, 128, 1024],
                   help="batch sizes (default: 20 128 1024)")
    p.add_argument("--objectives", nargs="+", default=["Trace_ELBO", "TraceMeanField_ELBO"],
                   choices=["Trace_ELBO", "TraceMeanField_ELBO"], help="default: both")
    p.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS),
                   help="paths of fit timed against the reference (default: all)")
    p.add_argument("--threads", type=int, nargs="+", default=None,
                   help="torch thread counts, measured in turn (default: torch's own)")
    p.add_argument("--steps", type=int, default=100, help="timed steps per round (default 100)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first (default 10)")
    p.add_argument("--rounds", type=int, default=9, help="interleaved rounds (default 9)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--table", default="speed-train", help="table name under "
                   "docs/benchmarks/tables/ (default speed-train; 'none': print only)")
    args = p.parse_args()
    device = torch.device(args.device)
    torch.set_flush_denormal(True)
    data = load_dataset("mnist", "train", binarize="static", download=False).x.to(device)
    torch.manual_seed(0)
    model = make_model("bernoulli_mlp").to(device)
    guide = make_guide("gaussian_mlp").to(device)
    head = ("| objective | batch | threads | path | ms/step | vs reference (median, range) |\n"
            "| --- | --- | --- | --- | --- | --- |")
    print(f"{device}, torch {torch.__version__}, load {os.getloadavg()[0]:.2f}; median of "
          f"{args.rounds} rounds of {args.steps} steps after {args.warmup} warm-up\n{head}")
    rows = []
    for threads in args.threads or [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        for kind in args.objectives:
            for b in args.batch_sizes:
                rows += measure(kind, b, data, model, guide, args)
    print(f"load at the end {os.getloadavg()[0]:.2f}")
    if args.table != "none":
        write_table(args.table, head + "\n" + "\n".join(rows),
                    budget=f"{args.rounds} interleaved rounds of {args.steps} steps after "
                    f"{args.warmup} warm-up per path, real MNIST batches",
                    seeds="0 (weights), 1 (draws)")


if __name__ == "__main__":
    main()
