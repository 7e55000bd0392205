"""Table 1 of Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders" (2016).

Trains the table's cells with ``fit`` (through :func:`inference.runs.train_run`) and scores
each with ``iw_log_likelihood`` (K = 5000 by default) on the MNIST test set, then writes a
Markdown table of ours next to the paper's. A cell is ``LAYERS:OBJECTIVE:K`` with LAYERS
``one`` (784-200-200-50) or ``two`` (784-200-200-100-100-100-50), OBJECTIVE ``vae`` (the
K-sample average ELBO), ``iwae`` or ``dreg`` (the same bound as IWAE, with Tucker et al.'s
doubly reparameterized guide gradient).

The paper's budget: Adam β = (0.9, 0.999), ε = 1e-4, batch 20, dynamic binarization,
stages i = 0..7 of 3**i epochs at lr 1e-3 · 10**(-i/7): 3,280 epochs. ``--stages S`` keeps
the first S stages (S = 4: 40 epochs). Every cell is a run folder under ``--out``: a cell
already trained and scored there is read back, a cell interrupted mid-training resumes.

    python benchmarks/iwae_table.py --stages 4 --cells one:vae:1,one:iwae:5,one:dreg:5
    python benchmarks/iwae_table.py --stages 8 --cells all --device cuda   # the paper's
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from inference.checkpoint import load_json
from inference.config import RunConfig
from inference.run_outputs import eval_stem, evaluate_run
from inference.runs import train_run

# Table 1 of the paper, test NLL in nats: (layers, objective) -> {k: NLL}.
PAPER = {("one", "vae"): {1: 86.76, 5: 86.47, 50: 86.35},
         ("one", "iwae"): {1: 86.76, 5: 85.54, 50: 84.78},
         ("two", "vae"): {1: 85.33, 5: 85.01, 50: 84.78},
         ("two", "iwae"): {1: 85.33, 5: 83.89, 50: 82.90}}
ALL = [f"{layers}:{obj}:{k}" for layers in ("one", "two") for obj in ("vae", "iwae")
       for k in (1, 5, 50)]
ARCHITECTURES = {
    "one": {"model": "bernoulli_mlp", "guide": "gaussian_mlp", "z_dim": 50,
            "hidden": (200, 200), "activation": "tanh", "guide_config": {"scale": "exp"}},
    "two": {"model": "two_layer", "guide": "two_layer"},
}
LOSS = {"vae": "trace", "iwae": "iwae", "dreg": "dreg"}
NAMES = {"vae": "VAE", "iwae": "IWAE", "dreg": "DReG (paper: its IWAE row)"}


def parse_cell(cell: str) -> tuple[str, str, int]:
    try:
        layers, objective, k = cell.split(":")
        k = int(k)
    except ValueError:
        raise SystemExit(f"cell {cell!r} is not LAYERS:OBJECTIVE:K, e.g. one:iwae:5") from None
    if layers not in ARCHITECTURES or objective not in LOSS or k < 1:
        raise SystemExit(f"cell {cell!r}: LAYERS is one or two, OBJECTIVE vae, iwae or dreg, "
                         f"K a positive integer")
    return layers, objective, k


def cell_config(layers: str, objective: str, k: int, args) -> RunConfig:
    epochs = sum(3**i for i in range(args.stages))
    # valid=0: as in the paper, all 60,000 training images and the last epoch, no selection
    return RunConfig(**ARCHITECTURES[layers], dataset="mnist", binarize="dynamic", valid=0,
                     loss=LOSS[objective], num_particles=k, epochs=epochs, batch_size=20,
                     lr=1e-3, adam_eps=1e-4, schedule="iwae", seed=args.seed,
                     device=args.device)


def run_cell(cell: str, args) -> dict:
    """Train (or resume, or read back) one cell and score it; returns its table row."""
    layers, objective, k = parse_cell(cell)
    config = cell_config(layers, objective, k, args)
    out = Path(args.out) / f"{layers}-{objective}-k{k}"
    metrics_file = out / "metrics.json"
    done = metrics_file.exists() and load_json(metrics_file)["epochs"] >= config.epochs
    if not done:
        print(f"== {cell}: training {config.epochs} epochs into {out}", flush=True)
        train_run(config, out, resume=(out / "checkpoint.pt").exists(), explicit={"epochs"},
                  progress=False, figures=())
    metrics = load_json(metrics_file)
    # the file evaluate_run writes for these settings: one definition of its name
    scores_file = out / f"{eval_stem('test', args.eval_samples, args.limit, 0, 'best')}.json"
    if not scores_file.exists():
        print(f"== {cell}: scoring with K = {args.eval_samples}", flush=True)
        evaluate_run(out, num_samples=args.eval_samples, limit=args.limit, device=args.device,
                     progress=False)
    scores = load_json(scores_file)
    train_s = sum(r["seconds"] for r in metrics["history"])
    return {"cell": cell, "layers": layers, "objective": objective, "k": k,
            "epochs": metrics["epochs"], "train_s": train_s, "eval_s": scores["seconds"],
            "nll": scores["nll"], "mc_stderr": scores["nll_mc_stderr"],
            "test_stderr": scores["nll_data_stderr"], "elbo": scores["elbo"],
            "active_units": sum(scores["active_units"].values()),
            "device": metrics["device"], "points": scores["n"],
            "paper": PAPER.get((layers, "iwae" if objective == "dreg" else objective), {}).get(k)}


def markdown(rows: list[dict], args) -> str:
    epochs = sum(3**i for i in range(args.stages))
    lines = [f"Budget: stages 0..{args.stages - 1} of the paper's schedule ({epochs} of 3,280 "
             f"epochs), batch 20, Adam eps 1e-4, dynamic binarization; NLL with K = "
             f"{args.eval_samples} on {'a random ' if args.limit else ''}"
             f"{rows[0]['points'] if rows else 0} test points (statically binarized once, "
             f"seed 0). Ours / paper, nats.", "",
             "| layers | objective | k = 1 | k = 5 | k = 50 |", "|---|---|---|---|---|"]
    by = {(r["layers"], r["objective"], r["k"]): r for r in rows}
    for layers in ("one", "two"):
        for obj in ("vae", "iwae", "dreg"):
            if not any(key[:2] == (layers, obj) for key in by):
                continue
            paper = PAPER[(layers, "iwae" if obj == "dreg" else obj)]
            cells = [f"{by[(layers, obj, k)]['nll']:.2f} / {paper[k]:.2f}" if (layers, obj, k)
                     in by else f"— / {paper[k]:.2f}" for k in (1, 5, 50)]
            lines.append(f"| {layers} | {NAMES[obj]} | " + " | ".join(cells) + " |")
    lines += ["", "| cell | epochs | train (s) | score (s) | device | NLL | ± MC | ± test set "
              "| ELBO | active units |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['cell']} | {r['epochs']} | {r['train_s']:.0f} | {r['eval_s']:.0f} "
                     f"| {r['device']} | {r['nll']:.2f} | {r['mc_stderr']:.3f} | "
                     f"{r['test_stderr']:.2f} | {r['elbo']:.2f} | {r['active_units']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", default="one:vae:1,one:iwae:5,one:dreg:5",
                   help="comma-separated LAYERS:OBJECTIVE:K, or 'all' (the paper's 12)")
    p.add_argument("--stages", type=int, default=4, help="schedule stages kept (paper: 8)")
    p.add_argument("--eval-samples", type=int, default=5000)
    p.add_argument("--limit", type=int, default=None,
                   help="score a random N test points (stratified by label, seeded by --seed; "
                        "default: all 10,000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="runs/iwae_table")
    args = p.parse_args(argv)
    cells = ALL if args.cells == "all" else args.cells.split(",")
    for cell in cells:
        parse_cell(cell)
    start = time.perf_counter()
    rows = [run_cell(cell, args) for cell in cells]
    table = markdown(rows, args)
    Path(args.out, "table.md").write_text(table)
    Path(args.out, "table.json").write_text(json.dumps(rows, indent=1))
    print(table)
    print(f"wrote {Path(args.out, 'table.md')} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
