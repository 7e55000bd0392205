"""Where the time of one evaluation chunk goes: ``iw_log_likelihood``'s chunk against the
hand-written IWAE chunk of ``bench_eval.py``, operator by operator (``torch.profiler``).

One chunk of the default sizes (:func:`inference.marginal.default_sizes`) for 200 test
points at K = 1000: the guide's networks on the batch, then K' particles through the
decoder and every log-density. Each path runs ``--repeats`` chunks under the profiler after
one warm-up chunk, the paths' chunks interleaved; the table lists the operators that take
the most self CPU time, in milliseconds per chunk, for each path side by side.

    python benchmarks/profile_eval.py
    python benchmarks/profile_eval.py --num-samples 5000 --top 12
"""

from __future__ import annotations

import argparse
import os

import pyro
import torch
from bench_eval import reference_iwae
from provenance import write_table
from torch.profiler import ProfilerActivity, profile

from guides import make_guide
from inference import load_dataset
from inference.marginal import _Accumulator, chunk_log_weights, default_sizes
from inference.traces import particle_dim
from models import make_model


def per_op(runs: dict, repeats: int) -> dict[str, dict[str, float]]:
    """Self CPU milliseconds per call of each operator of each path (and ``"total"``), the
    paths' calls interleaved so that a shared machine's drifts hit them alike."""
    ops: dict[str, dict[str, float]] = {name: {} for name in runs}
    for fn in runs.values():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in runs.items():
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                fn()
            for e in prof.key_averages():
                ops[name][e.key] = ops[name].get(e.key, 0) + e.self_cpu_time_total / 1000 / repeats
    for o in ops.values():
        o["total"] = sum(o.values())
    return ops


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=200, help="test points (default 200)")
    p.add_argument("--num-samples", type=int, default=1000, help="K (default 1000)")
    p.add_argument("--repeats", type=int, default=3, help="profiled chunks (default 3)")
    p.add_argument("--top", type=int, default=10, help="operators listed (default 10)")
    p.add_argument("--table", default="profile-eval", help="table name (default "
                   "profile-eval; 'none': print only)")
    args = p.parse_args()
    torch.manual_seed(0)
    model, guide = make_model("bernoulli_mlp").eval(), make_guide("gaussian_mlp").eval()
    x = load_dataset("embedded", "test").x[: args.points]
    batch, chunk = default_sizes(len(x), x.shape[1], args.num_samples, None, None)
    xb = x[:batch]
    dim = particle_dim(model, guide, xb[:1], None)

    def ours():  # one chunk as importance_sample runs it
        acc = _Accumulator()
        with pyro.validation_enabled(False):
            acc.add(*chunk_log_weights(model, guide, xb, None, chunk, dim), keep=False)

    runs = {"hand-written": lambda: reference_iwae(model, guide, xb, chunk, batch, chunk),
            "default (iw_log_likelihood chunk)": ours}
    ops = per_op(runs, args.repeats)
    names = sorted({k for o in ops.values() for k in o if k != "total"},
                   key=lambda k: -max(o.get(k, 0) for o in ops.values()))[: args.top]
    head = ("| operator | " + " | ".join(f"{n} ms" for n in runs) + " |\n| --- |"
            + " --- |" * len(runs))
    rows = [f"| `{k}` | " + " | ".join(f"{ops[n].get(k, 0):.1f}" for n in runs) + " |"
            for k in [*names, "total"]]
    table = head + "\n" + "\n".join(rows)
    print(f"{batch} points x {chunk} particles per chunk, {torch.get_num_threads()} thread(s),"
          f" load {os.getloadavg()[0]:.2f}\n{table}")
    if args.table != "none":
        write_table(args.table, table, budget=f"{args.repeats} profiled chunks of {chunk} "
                    f"particles x {batch} points (K = {args.num_samples}) per path",
                    seeds="0")


if __name__ == "__main__":
    main()
