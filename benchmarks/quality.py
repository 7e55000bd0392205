"""Sample quality beside the likelihood: one table of test NLL, Fréchet distance, precision
and recall for the registered pairs on MNIST and Fashion-MNIST, β-VAEs included.

Every cell is a run folder under ``--out`` (``<dataset>-<cell>``): it is trained with
``vae-train``'s own path (:func:`inference.runs.train_run`), scored by ``vae-eval`` (test
NLL with ``--eval-samples`` importance samples on a stratified random ``--eval-limit`` test
points) and by ``vae-eval --quality`` (``--samples`` pixel means from the prior against the
whole test split, in the feature space of the dataset's reference classifier). A cell
already trained and scored is read back; an interrupted one resumes. The reference rows
(train vs test, independent pixels) are measured by the same call and printed once per
dataset.

    python benchmarks/quality.py --epochs 10                       # every cell, both sets
    python benchmarks/quality.py --cells mlp,beta0.5,beta4,gaussian,cvae,conv,two_layer \
        --epochs 5 --train-limit 20000 --eval-samples 200 --eval-limit 1000 --samples 5000
        # the docs' table (7 cells, both sets): about 27 min at 1 thread on the shared 2-core CPU
    python benchmarks/quality.py --datasets mnist --cells mlp,beta0.5,beta4 --epochs 5
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import time
from pathlib import Path

import pyro
import torch
from provenance import write_table

from inference.checkpoint import load_json
from inference.config import RunConfig
from inference.datasets import load_splits
from inference.quality import independent_pixels, model_samples
from inference.quality.run import BASELINE, FLOOR, quality_run, quality_stem
from inference.run_folder import load_run
from inference.run_outputs import eval_stem, evaluate_run
from inference.runs import train_run

# name -> (what the table calls it, RunConfig fields)
CELLS = {
    "mlp": ("bernoulli_mlp + gaussian_mlp", {}),
    "beta0.5": ("the same, β = 0.5", {"beta": 0.5}),
    "beta4": ("the same, β = 4", {"beta": 4.0}),
    "conv": ("conv + conv", {"model": "conv", "guide": "conv"}),
    "two_layer": ("two_layer + two_layer", {"model": "two_layer", "guide": "two_layer"}),
    "cvae": ("conditional_mlp (z 2), y sampled", {"model": "conditional_mlp",
                                                  "guide": "conditional_mlp", "z_dim": 2}),
    "gaussian": ("gaussian_mlp (sigmoid mean) on grey levels",
                 {"model": "gaussian_mlp", "binarize": "none",
                  "model_config": {"mean": "sigmoid"}}),
}


def edge_energy(x: torch.Tensor) -> float:
    """Mean absolute difference between neighbouring pixels (N, D) of square grey images:
    blur lowers it, noise raises it."""
    side = math.isqrt(x.shape[1])
    img = x.reshape(-1, side, side).double()  # (N, H, W)
    return ((img[:, 1:] - img[:, :-1]).abs().mean()
            + (img[:, :, 1:] - img[:, :, :-1]).abs().mean()).item() / 2


@functools.cache
def reference_sharpness(dataset: str) -> dict:
    """Edge energy of the grey test images, and the reference rows' relative to it."""
    train, _, test = load_splits(dataset, binarize="none")
    real = edge_energy(test.x)
    rows = train.subset(2000, seed=0).x
    return {"test": real, FLOOR: edge_energy(rows) / real,
            BASELINE: edge_energy(independent_pixels(train.x, 2000, seed=0)) / real}


def sharpness(out: Path, dataset: str, n: int = 2000) -> float:
    """Edge energy of ``n`` pixel means from the run's prior over that of the test images:
    1 is as sharp as the data, below 1 blurrier."""
    model, _, _ = load_run(out, "cpu")
    pyro.set_rng_seed(0)
    return edge_energy(model_samples(model, n)) / reference_sharpness(dataset)["test"]


def run_cell(dataset: str, cell: str, args) -> dict:
    """Train (or resume, or read back) one cell, score it; returns its table row."""
    name, fields = CELLS[cell]
    config = RunConfig(dataset=dataset, epochs=args.epochs, seed=args.seed, device=args.device,
                       train_limit=args.train_limit, **fields)
    out = Path(args.out) / f"{dataset}-{cell}"
    metrics_file = out / "metrics.json"
    if not (metrics_file.exists() and load_json(metrics_file)["epochs"] >= config.epochs):
        print(f"== {dataset} {cell}: training {config.epochs} epochs into {out}", flush=True)
        train_run(config, out, resume=(out / "checkpoint.pt").exists(), explicit={"epochs"},
                  progress=False, figures=(), tensorboard=False)
    nll_file = out / f"{eval_stem('test', args.eval_samples, args.eval_limit, 0, 'best')}.json"
    if not nll_file.exists():
        print(f"== {dataset} {cell}: NLL, K = {args.eval_samples}", flush=True)
        evaluate_run(out, num_samples=args.eval_samples, limit=args.eval_limit,
                     device=args.device, progress=False, log=lambda _: None)
    quality_file = out / f"{quality_stem('test', args.samples, 'mean', None, 0, 'best')}.json"
    if not quality_file.exists():
        print(f"== {dataset} {cell}: sample quality, {args.samples} samples", flush=True)
        quality_run(out, n=args.samples, device=args.device, progress=False)
    metrics, nll, quality = (load_json(f) for f in (metrics_file, nll_file, quality_file))
    per_class = (quality.get("per_class") or {}).get("model")
    return {"dataset": dataset, "cell": cell, "pair": name, "epochs": metrics["epochs"],
            "best_epoch": metrics.get("best_epoch"), "nll": nll["nll"], "elbo": nll["elbo"],
            "kl": nll["kl"],
            "continuous": config.binarize == "none", "target": nll.get("target", "x"),
            "train_s": sum(r["seconds"] for r in metrics["history"]),
            "quality_s": quality["seconds"], **quality["rows"]["model"],
            "sharpness": sharpness(out, dataset),
            "label_accuracy": None if per_class is None else per_class["mean"]["accuracy"],
            "references": {k: {**quality["rows"][k],
                               "sharpness": reference_sharpness(dataset)[k]}
                           for k in (FLOOR, BASELINE)},
            "classifier": quality["classifier"]}


def _row(name: str, nll: str, r: dict, extra: str = "") -> str:
    return (f"| {name} | {nll} | {r['frechet_distance']:.2f} | {r['precision']:.3f} | "
            f"{r['recall']:.3f} | {r['class_entropy']:.3f} | {r['top_probability']:.3f} |"
            f" {r['sharpness']:.2f} | {extra} |")


def markdown(rows: list[dict], args) -> str:
    subset = (f"a stratified random {args.train_limit} training images" if args.train_limit
              else "the whole training split")
    lines = [f"Budget: {args.epochs} epochs per cell on {subset} (batch 128, Adam 1e-3, seed "
             f"{args.seed}, the epoch best on validation kept); test NLL and ELBO with "
             f"K = {args.eval_samples} on {args.eval_limit or 'all'} random test points "
             f"(nats; the Gaussian cell's is a density on grey levels, not comparable); "
             f"{args.samples} pixel means from the prior against the whole test split; "
             f"k = 3; sharpness: edge energy (mean |difference| of neighbouring pixels) of "
             f"2000 pixel means over the test images'; {torch.get_num_threads()} CPU "
             f"thread(s).", ""]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == dataset]
        c = mine[0]["classifier"]
        lines += [f"**{dataset}** (classifier: test accuracy {c['test_accuracy']:.4f}, trained "
                  f"in {c['seconds']:.0f} s on {c['threads']} thread(s))", "",
                  "| pair | epochs | test NLL | ELBO | KL | FD | precision | recall | "
                  "class entropy | top p | sharpness | label accuracy |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in mine:
            nll = (f"{r['nll']:.2f}" + (" (density)" if r["continuous"] else "")
                   + (" (−log p(x, y))" if r.get("target") == "x, y" else ""))
            acc = "" if r["label_accuracy"] is None else f"{r['label_accuracy']:.3f}"
            lines.append(_row(r["pair"], f"{r['epochs']} | {nll} | {r['elbo']:.2f} | "
                                         f"{r['kl']:.2f}", r, acc))
        for name, ref in mine[0]["references"].items():
            lines.append(_row(name, "— | — | — | —", ref))
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="mnist,fashion-mnist")
    p.add_argument("--cells", default=",".join(CELLS), help=f"any of {', '.join(CELLS)}")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--train-limit", type=int, default=None,
                   help="train every cell on a stratified random subset of this many images")
    p.add_argument("--eval-samples", type=int, default=1000, metavar="K")
    p.add_argument("--eval-limit", type=int, default=2000, help="random test points for NLL")
    p.add_argument("--samples", type=int, default=10_000, help="samples for sample quality")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/quality_table")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cells = args.cells.split(",")
    unknown = sorted(set(cells) - set(CELLS))
    if unknown:
        raise SystemExit(f"unknown cell {unknown[0]!r}; choose from {', '.join(CELLS)}")
    start = time.perf_counter()
    rows = [run_cell(d, c, args) for d in args.datasets.split(",") for c in cells]
    table = markdown(rows, args)
    Path(args.out, "table.md").write_text(table)
    Path(args.out, "table.json").write_text(json.dumps(rows, indent=1))
    print(table)
    print(f"wrote {Path(args.out, 'table.md')} ({time.perf_counter() - start:.0f} s)")
    write_table("quality" if args.seed == 0 else f"quality-seed{args.seed}", table,
                budget=f"{args.epochs} epochs per cell, K = {args.eval_samples}, "
                       f"{args.samples} samples", seeds=str(args.seed))


if __name__ == "__main__":
    main()
