"""Richer posteriors and priors at one training budget: VAE, IAF guide, VampPrior, IAF +
VampPrior and a mixture prior on statically binarized MNIST (Larochelle & Murray 2011).

Every cell is the lab's default MLP (784-400-50, softplus; the IAF guide adds 2 steps of a
320-unit MADE; the VampPrior has 500 pseudo-inputs and shares the guide's encoder; the
mixture prior has 10 components), trained with ``fit`` (through
:func:`inference.runs.train_run`) for the same number of epochs, batch 100, Adam lr 1e-3,
Trace_ELBO. The epoch with the best validation ELBO (Larochelle's 10,000 valid images) is
scored on the test set with ``evaluate_run``: NLL with K importance samples, ELBO, KL,
active units, median ESS and the share of points with k̂ > 0.7. Cells share the test points,
so their NLL differences are reported per point, with paired standard errors.

Each cell is a run folder under ``--out``: a cell trained and scored there is read back, a
cell interrupted mid-training resumes, so the table can be built one cell per command:

    python benchmarks/posteriors.py --epochs 100                         # the full table
    python benchmarks/posteriors.py --cells iaf --epochs 10 --eval-samples 500 --limit 2000
    python benchmarks/posteriors.py --train-limit 10000 --epochs 10 --eval-samples 1000 \
        --limit 500                                 # the docs' table, ~25 min at 1 thread
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from provenance import write_table

from inference.checkpoint import load_checkpoint, load_json
from inference.config import RunConfig
from inference.run_outputs import eval_stem, evaluate_run
from inference.runs import train_run

CELLS = {  # name: (model, guide, label)
    "vae": ("bernoulli_mlp", "gaussian_mlp", "VAE (N(0, I) prior, diagonal guide)"),
    "iaf": ("bernoulli_mlp", "iaf", "IAF guide"),
    "vamp": ("vamp", "gaussian_mlp", "VampPrior"),
    "iaf-vamp": ("vamp", "iaf", "IAF guide + VampPrior"),
    "mixture": ("mixture", "gaussian_mlp", "mixture-of-Gaussians prior (10)"),
    "spline": ("bernoulli_mlp", "spline", "spline-flow guide"),
}
DEFAULT = "vae,iaf,vamp,iaf-vamp,mixture"
PAIRED = [("iaf", "vae"), ("vamp", "vae"), ("iaf-vamp", "vae"), ("mixture", "vae"),
          ("spline", "vae"), ("iaf-vamp", "vamp"), ("iaf-vamp", "iaf")]
# Published test NLL on statically binarized MNIST, with their budgets.
REFERENCES = [
    ("VAE, Pythae's reproduction of Rezende & Mohamed (2015), Table 1", 89.78,
     "NLL with K = 200 (paper: 89.9)"),
    ("VampPrior K = 500, Pythae's reproduction of Tomczak & Welling (2018), Table 1", 85.79,
     "NLL with K = 5000 (paper: 85.57; Adam, batch 100, KL warm-up, early stopping)"),
    ("IWAE k = 50, Pythae's reproduction of Burda et al. (2016)", 86.82,
     "NLL with K = 5000 (reference 87.1)"),
    ("deep IAF model, Kingma et al. (2016)", 79.88,
     "ResNet VAE with IAF posterior; not an MLP, far larger budget"),
]


def cell_config(name: str, args) -> RunConfig:
    model, guide, _ = CELLS[name]
    return RunConfig(model=model, guide=guide, z_dim=50, hidden=(400,),
                     activation="softplus", dataset="binarized-mnist", loss="trace",
                     train_limit=args.train_limit, epochs=args.epochs, batch_size=100,
                     lr=1e-3, seed=args.seed, device=args.device, fast=args.fast)


def run_cell(name: str, args) -> dict:
    """Train (or resume, or read back) one cell and score it; returns its row."""
    config = cell_config(name, args)
    out = Path(args.out) / name
    metrics_file = out / "metrics.json"
    done = metrics_file.exists() and load_json(metrics_file)["epochs"] >= config.epochs
    if not done:
        print(f"== {name}: training {config.epochs} epochs into {out}", flush=True)
        train_run(config, out, resume=(out / "checkpoint.pt").exists(), explicit={"epochs"},
                  progress=False, figures=(), tensorboard=False)
    metrics = load_json(metrics_file)
    stem = eval_stem("test", args.eval_samples, args.limit, 0, "best")
    if not (out / f"{stem}.json").exists():
        print(f"== {name}: scoring with K = {args.eval_samples}", flush=True)
        evaluate_run(out, num_samples=args.eval_samples, limit=args.limit, device=args.device,
                     progress=False)
    scores = load_json(out / f"{stem}.json")
    seconds = [r["seconds"] for r in metrics["history"]]
    return {"cell": name, "label": CELLS[name][2], "epochs": metrics["epochs"],
            "best_epoch": metrics.get("best_epoch"), "s_per_epoch": sum(seconds) / len(seconds),
            "eval_s": scores["seconds"], "nll": scores["nll"],
            "mc_stderr": scores["nll_mc_stderr"], "test_stderr": scores["nll_data_stderr"],
            "elbo": scores["elbo"], "kl": scores["kl"],
            "active_units": sum(scores["active_units"].values()),
            "ess_median": scores["ess_median"], "khat_bad": scores["share_khat_above_0.7"],
            "khat_median": load_checkpoint(out / f"{stem}-points.pt")["khat"].median().item(),
            "points": scores["n"], "rows": scores["data"].get("rows"),
            "device": metrics["device"], "fast_path": metrics.get("fast_path"),
            "points_file": str(out / f"{stem}-points.pt")}


def paired(rows: dict[str, dict], a: str, b: str, num_samples: int) -> dict:
    """NLL(a) − NLL(b) per point with its standard error, and the per-point effective
    sample sizes' ratio (ESS = 1 / (se² + 1/K), se the delta-method Monte Carlo error)."""
    pa, pb = (load_checkpoint(Path(rows[c]["points_file"])) for c in (a, b))
    diff = (pa["nll"] - pb["nll"]).double()  # (n,)
    ess = [1 / (p["nll_mc_stderr"].double().pow(2) + 1 / num_samples) for p in (pa, pb)]
    khat = (pa["khat"] - pb["khat"]).double()
    n = len(diff)
    return {"a": a, "b": b, "n": n, "nll_diff": diff.mean().item(),
            "nll_diff_se": (diff.std() / math.sqrt(n)).item(),
            "ess_ratio_median": (ess[0] / ess[1]).median().item(),
            "khat_diff": khat.mean().item(), "khat_diff_se": (khat.std() / math.sqrt(n)).item()}


def markdown(rows: list[dict], pairs: list[dict], args) -> str:
    points = rows[0]["points"] if rows else 0
    train = ("Larochelle's 50,000 training images" if args.train_limit is None else
             f"a random {args.train_limit} of Larochelle's 50,000 training images "
             f"(seed {args.seed})")
    lines = [f"Budget: {args.epochs} epochs of {train}, batch 100, "
             f"Adam lr 1e-3, Trace_ELBO, seed {args.seed}; epoch chosen on the 10,000 valid "
             f"images; test NLL with K = {args.eval_samples} on {points} test points "
             f"({'all' if args.limit is None else f'a random {args.limit}, seed {args.seed}'}). "
             f"Nats; lower NLL is better.", "",
             "| cell | NLL | ± MC | ± test set | ELBO | KL | active units | median ESS | "
             "k̂ > 0.7 | median k̂ | s / epoch | best epoch |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['nll']:.2f} | {r['mc_stderr']:.3f} | "
                     f"{r['test_stderr']:.2f} | {r['elbo']:.2f} | {r['kl']:.2f} | "
                     f"{r['active_units']} | {r['ess_median']:.1f} of {args.eval_samples} | "
                     f"{100 * r['khat_bad']:.1f}% | {r['khat_median']:.2f} | "
                     f"{r['s_per_epoch']:.1f} | "
                     f"{r['best_epoch']} of {r['epochs']} |")
    for label, nll, budget in REFERENCES:
        lines.append(f"| {label} | {nll:.2f} | | | | | | | | | | {budget} |")
    lines += ["", "Paired differences on the same test points (a − b; negative: a is better):",
              "", "| a | b | NLL(a) − NLL(b) | ± paired se | median ESS ratio a / b | "
              "mean k̂(a) − k̂(b) |", "|---|---|---|---|---|---|"]
    for p in pairs:
        lines.append(f"| {p['a']} | {p['b']} | {p['nll_diff']:+.2f} | {p['nll_diff_se']:.2f} | "
                     f"{p['ess_ratio_median']:.2f} | {p['khat_diff']:+.3f} ± "
                     f"{p['khat_diff_se']:.3f} |")
    machine = f"{rows[0]['device']}, {torch.get_num_threads()} threads" if rows else ""
    lines += ["", f"Machine: {machine}; scoring took "
              + ", ".join(f"{r['cell']} {r['eval_s']:.0f} s" for r in rows) + "."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", default=DEFAULT, help=f"comma-separated, of {', '.join(CELLS)}")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--eval-samples", type=int, default=5000)
    p.add_argument("--train-limit", type=int, default=None,
                   help="train every cell on the same random subset of N training images")
    p.add_argument("--limit", type=int, default=None,
                   help="score a random subset of N test points (the same for every cell)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--fast", default="auto", choices=("auto", "compile", "off"))
    p.add_argument("--out", default="runs/posteriors")
    args = p.parse_args(argv)
    cells = args.cells.split(",")
    unknown = [c for c in cells if c not in CELLS]
    if unknown:
        raise SystemExit(f"unknown cell {unknown[0]!r}; choose from {', '.join(CELLS)}")
    start = time.perf_counter()
    rows = {c: run_cell(c, args) for c in cells}
    if len({json.dumps(r["rows"]) for r in rows.values()}) > 1:
        raise SystemExit("the cells were scored on different test points; rerun with one --limit")
    pairs = [paired(rows, a, b, args.eval_samples) for a, b in PAIRED if a in rows and b in rows]
    table = markdown(list(rows.values()), pairs, args)
    Path(args.out, "table.md").write_text(table)
    Path(args.out, "table.json").write_text(json.dumps({"rows": list(rows.values()),
                                                        "paired": pairs}, indent=1))
    print(table)
    print(f"wrote {Path(args.out, 'table.md')} ({time.perf_counter() - start:.0f} s)")
    write_table(f"posteriors-seed{args.seed}", table,
                budget=f"{args.epochs} epochs per cell, K = {args.eval_samples}",
                seeds=str(args.seed))


if __name__ == "__main__":
    main()
