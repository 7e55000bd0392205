"""Where the time of one training step goes: each path's step split into timed sections.

The networks of ``bench_train.py`` (784-400-50 Bernoulli pair, Trace_ELBO, Adam lr 1e-3),
real MNIST batches, one process. Paths, each restarted from the same weights in every
round, rounds interleaved (rotating order):

- ``hand-written``: the reference step of ``bench_train.py`` (torch Adam, its default loop);
- ``networks only``: the same networks' forward and backward without any density, the floor;
- ``fit, fast=off``: Pyro's ``Trace_ELBO`` (two traces, the handler stack, distributions);
- ``default before``: the fast path as it was, a captured forward graph, autograd's backward
  and torch's default Adam (``capture.JOINT = False``);
- ``default``: what ``fit`` runs now, one joint forward-backward graph and fused Adam.

Sections: ``loss`` (the forward pass: networks, densities and, for Pyro, its handlers and
traces), ``backward`` (autograd; part of ``loss`` for a joint graph), ``optimizer``
(``step`` and ``zero_grad``), ``bookkeeping`` (what ``Trainer.train_epoch`` adds per step:
the float64 running sum, the clock read and the progress bar's update). Milliseconds per
step, medians over the rounds; the last column is the median of each round's total divided by
the hand-written total.

    python benchmarks/profile_step.py                   # batch 20, 128 and 1024
    python benchmarks/profile_step.py --batch-sizes 128 --rounds 3 --no-table
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import pyro
import torch
from bench_train import reference_loss
from provenance import write_table
from pyro.infer import Trace_ELBO
from tqdm import tqdm

from guides import make_guide
from inference import capture, load_dataset
from inference.train import Trainer, default_optimizer, parameters
from models import make_model

SECTIONS = ("loss", "backward", "optimizer", "bookkeeping")


class Path:
    """One way of taking a step, as a list of timed sections."""

    def __init__(self, model, guide, kind: str):
        self.model, self.guide, self.kind = model, guide, kind
        self.initial = copy.deepcopy((model.state_dict(), guide.state_dict()))
        self.bar = tqdm(total=10**9, file=open(os.devnull, "w"), mininterval=0.1)  # noqa: SIM115
        if kind.startswith("fit") or kind.startswith("default"):
            capture.JOINT = kind == "default"
            self.trainer = Trainer(model, guide, Trace_ELBO(), self.optimizer(), seed=0,
                                   clip_norm=None, progress=False,
                                   fast=False if kind == "fit, fast=off" else "auto")
            capture.JOINT = True
        self.reset()

    def optimizer(self):
        params = parameters(self.model, self.guide)
        return default_optimizer(params) if self.kind == "default" else torch.optim.Adam(
            params, lr=1e-3)

    def reset(self):
        self.model.load_state_dict(self.initial[0])
        self.guide.load_state_dict(self.initial[1])
        self.opt = self.optimizer()
        if hasattr(self, "trainer"):
            self.trainer.optimizer = self.opt
        self.total = None

    def sections(self, x):
        """(name, thunk) pairs run in order; a thunk's result is passed on as ``self.out``."""
        if self.kind == "hand-written":
            loss = lambda: reference_loss(self.model, self.guide, x, False)  # noqa: E731
        elif self.kind == "networks only":
            loss = lambda: self.model.decoder(  # noqa: E731
                self.guide.head(self.guide.trunk(x))[:, :50]).sum()
        elif self.kind == "default":
            loss = lambda: self.trainer.fast.step(x, None)  # noqa: E731
        elif self.kind == "fit, fast=off":
            loss = lambda: Trace_ELBO().differentiable_loss(  # noqa: E731
                self.model, self.guide, x, None)
        else:
            loss = lambda: self.trainer.fast.captured(x, None)  # noqa: E731
        out = [("loss", loss)]
        if self.kind != "default":
            out.append(("backward", lambda: self.out.backward() or self.out.detach()))
        out.append(("optimizer", self.opt_step))
        if self.kind.startswith("default"):
            out.append(("bookkeeping", self.bookkeeping))
        return out

    def opt_step(self):
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return self.out

    def bookkeeping(self):  # as Trainer.train_epoch, per step
        value = self.out.to(torch.float64)
        self.total = value if self.total is None else self.total + value
        time.perf_counter()
        self.bar.update()
        return self.out


def run(path: Path, batches, warmup: int) -> dict[str, float]:
    """Milliseconds per step in each section, over the batches after ``warmup``."""
    spent = dict.fromkeys(SECTIONS, 0.0)
    with pyro.validation_enabled(False):
        for i, x in enumerate(batches):
            for name, thunk in path.sections(x):
                start = time.perf_counter()
                with path.trainer.handled() if hasattr(path, "trainer") else _null():
                    path.out = thunk()
                if i >= warmup:
                    spent[name] += time.perf_counter() - start
    n = len(batches) - warmup
    return {k: v / n * 1000 for k, v in spent.items()}


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


KINDS = ("hand-written", "networks only", "fit, fast=off", "default before", "default")


def profile(data, b: int, args) -> list[str]:
    batches = list(data[: b * (args.steps + args.warmup)].split(b))
    torch.manual_seed(0)
    model, guide = make_model("bernoulli_mlp"), make_guide("gaussian_mlp")
    capture.CAPTURE_AFTER = 1  # graphs are built in the warm-up
    paths = [Path(copy.deepcopy(model), copy.deepcopy(guide), k) for k in KINDS]
    for p in paths:
        run(p, batches[: args.warmup + 1], args.warmup)
    times: dict[str, list[dict[str, float]]] = {k: [] for k in KINDS}
    for r in range(args.rounds):
        for p in paths[r % len(paths):] + paths[: r % len(paths)]:
            p.reset()
            torch.manual_seed(1)
            times[p.kind].append(run(p, batches, args.warmup))
    totals = {k: [sum(t.values()) for t in ts] for k, ts in times.items()}
    rows = []
    for k, ts in times.items():
        med = {s: statistics.median(t[s] for t in ts) for s in SECTIONS}
        ratio = statistics.median(a / ref for a, ref in zip(totals[k], totals["hand-written"],
                                                             strict=True))
        cells = " | ".join(f"{med[s]:.3f}" if med[s] else "–" for s in SECTIONS)
        rows.append(f"| {b} | {k} | {cells} | {statistics.median(totals[k]):.3f} | "
                    f"{ratio:.3f} |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[20, 128, 1024],
                   help="batch sizes to profile (default: 20 128 1024)")
    p.add_argument("--steps", type=int, default=60, help="timed steps per round (default 60)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--no-table", action="store_true", help="print only (default: also write "
                   "docs/benchmarks/tables/profile-step.md)")
    args = p.parse_args()
    torch.set_flush_denormal(True)
    data = load_dataset("mnist", "train", binarize="static", download=False).x
    head = ("| batch | path | loss | backward | optimizer | bookkeeping | total ms | "
            "vs hand-written |\n| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"{torch.get_num_threads()} thread(s), load {os.getloadavg()[0]:.2f}\n{head}")
    rows = []
    for b in args.batch_sizes:
        rows += profile(data, b, args)
        print("\n".join(rows[-len(KINDS):]), flush=True)
    if not args.no_table:
        write_table(f"profile-step-{torch.get_num_threads()}t", head + "\n" + "\n".join(rows),
                    budget=f"{args.rounds} interleaved rounds of {args.steps} steps after "
                    f"{args.warmup} warm-up, per batch size", seeds="0 (weights), 1 (draws)")


if __name__ == "__main__":
    main()
