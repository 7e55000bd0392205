"""β-TCVAE against β-VAE and the plain VAE on the rendered dSprites, trained until the
disentanglement metrics move, with MIG and the KL per latent at every checkpoint.

Chen et al. (2018) report that β-TCVAE beats β-VAE on MIG; Locatello et al. (2019) train
300,000 steps of batch 64 and warn that the seed moves the scores as much as the objective.
Each cell (objective, β, seed) is a ``vae-train`` run folder under ``--out``, with
disentanglement_lib's settings where they fit a CPU: 10 latents, Bernoulli likelihood,
Adam, the encoder's mean as the code (MLP networks, not its convolutions). Two settings
differ, both measured (docs/benchmarks/disentanglement.md): three hidden layers of 256 in
each network (with one, position is learned in a rotated or split code), and batches of
512 for the total-correlation estimate (Chen et al. used 2,048; the library 64). The
cells of one seed train in turns, ``--eval-every`` epochs at a time, so that all of them
have the same number of steps whenever the run stops; after each turn the last weights
are scored (MIG on 10,000 random sprites and the KL per latent on validation images) into
the folder's ``curve.jsonl``. A stopped or interrupted table resumes where it was.
``--time-budget`` stops starting new turns when the next would not fit. Each cell's last
weights then get MIG, DCI, the FactorVAE score, SAP, the test ELBO and its decomposition
(``vae-eval --disentanglement``); ``table.md``, ``results.json``, ``mig-vs-steps.png``,
``kl-per-latent.png`` and ``traversals.png`` (the best cell's latents, each labelled with
the factor it shares most information with) go into ``--out``, and with ``--docs`` the
table (through ``provenance.write_table``) and figures into the docs.

    python benchmarks/disentanglement.py --out runs/disentangle --docs   # see the docs page
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch
from provenance import write_table

from inference.checkpoint import load_json
from inference.config import RunConfig
from inference.disentangle import progress
from inference.disentangle.data import ground_truth, load_factor_split
from inference.disentangle.evaluate import evaluate_disentanglement
from inference.run_folder import load_run
from inference.runs import train_run

NAMES = {"vae": "VAE", "beta": "β-VAE", "betatc": "β-TCVAE", "dip1": "DIP-VAE-I"}
LOSS = {"vae": "trace", "beta": "trace", "betatc": "betatc", "dip1": "dip1"}
FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures" / "disentangle"
KEYS = ("MIG", "DCI-D", "FactorVAE", "SAP", "ELBO", "MI", "TC", "dim-KL", "active")


def parse_cells(text: str) -> list[tuple[str, float]]:
    """``betatc:6,beta:4,vae`` -> [("betatc", 6.0), ("beta", 4.0), ("vae", 1.0)]."""
    cells = []
    for item in text.split(","):
        obj, _, beta = item.partition(":")
        if obj not in NAMES:
            raise argparse.ArgumentTypeError(f"unknown objective {obj!r}; choose from "
                                             f"{', '.join(NAMES)}")
        b = float(beta) if beta else 1.0
        if obj in ("vae", "dip1") and b != 1:
            raise argparse.ArgumentTypeError(f"{obj} has no β; write it without ':β'")
        cells.append((obj, b))
    return cells


def folder(args, obj: str, beta: float, seed: int) -> Path:
    return args.out / f"{obj}-b{beta:g}-s{seed}-lr{args.lr:g}"


def config(args, obj: str, beta: float, seed: int, epochs: int) -> RunConfig:
    return RunConfig(model="bernoulli_mlp", guide="gaussian_mlp", z_dim=10,
                     hidden=tuple(args.hidden), dataset="sprites",
                     train_limit=args.train_points, valid=args.valid_points, loss=LOSS[obj],
                     beta=beta, epochs=epochs, batch_size=args.batch_size, lr=args.lr,
                     seed=seed, device="cpu")


def check_folder(args, cell: tuple[str, float, int], out: Path) -> None:
    """Refuse a cell folder trained with other networks or data than ``args`` ask for: a
    resumed run keeps its saved configuration, so the new flags would do nothing."""
    if not (out / "config.json").exists():
        return
    saved = RunConfig.from_json(load_json(out / "config.json")["run"])
    asked = config(args, *cell, saved.epochs)
    for name in ("hidden", "batch_size", "train_limit", "valid"):
        if getattr(saved, name) != getattr(asked, name):
            raise SystemExit(f"{out} was trained with {name} {getattr(saved, name)!r}, not "
                             f"{getattr(asked, name)!r}: pass the same settings or another --out")


def advance(args, cell: tuple[str, float, int], epochs: int, valid_x: torch.Tensor) -> dict:
    """Train the cell to ``epochs`` (resuming) and score its last weights into the curve;
    returns the curve's last record."""
    obj, beta, seed = cell
    out = folder(args, *cell)
    check_folder(args, cell, out)
    curve_path = out / "curve.jsonl"
    done = {r["epoch"]: r for r in progress.read_curve(curve_path)}
    if epochs in done:
        return done[epochs]
    ckpt = out / "checkpoint.pt"
    train_run(config(args, obj, beta, seed, epochs), out, resume=ckpt.exists(),
              explicit={"epochs"}, progress=False, figures=(), tensorboard=False,
              log=lambda *_: None)
    model, guide, saved = load_run(out, "cpu", checkpoint="last")
    history = saved["history"]
    scores = progress.checkpoint_scores(model, guide, ground_truth("sprites"), valid_x,
                                        seed=seed)
    record = {"epoch": saved["epoch"], "steps": sum(r["steps"] for r in history),
              "train_seconds": sum(r["seconds"] for r in history),
              "valid_elbo": history[-1].get("valid_elbo"), **scores}
    progress.append_curve(curve_path, record)
    return record


def train_cells(args, valid_x: torch.Tensor) -> None:
    """Seed by seed, the cells in turns of ``--eval-every`` epochs up to ``--steps``."""
    per_epoch = math.ceil(args.train_points / args.batch_size)
    total = max(1, math.ceil(args.steps / per_epoch))
    targets = sorted({*range(args.eval_every, total, args.eval_every), total})
    start, last_turn = time.perf_counter(), 0.0
    for seed in args.seeds:
        for target in targets:
            elapsed = time.perf_counter() - start
            if args.time_budget and elapsed + last_turn > 60 * args.time_budget:
                print(f"time budget: {elapsed:.0f} s spent, the next turn would not fit",
                      flush=True)
                return
            t = time.perf_counter()
            for obj, beta in args.cells:
                r = advance(args, (obj, beta, seed), target, valid_x)
                active = sum(k >= progress.INACTIVE_KL for k in r["kl_per_dim"])
                print(f"seed {seed} {NAMES[obj]} β={beta:g}: {r['steps']} steps, MIG "
                      f"{r['mig']:.3f}, valid ELBO {r['valid_elbo']:.1f}, {active} active "
                      f"latents, {r['train_seconds']:.0f} s training", flush=True)
            last_turn = time.perf_counter() - t


def final_scores(args, cell: tuple[str, float, int]) -> dict | None:
    """The cell's last weights scored on every metric (cached in ``final.json`` for the
    steps it has); None for a cell that never trained. A cell trained with other settings
    than ``args`` is refused: the table's budget line states ``args``' networks and batch."""
    out = folder(args, *cell)
    check_folder(args, cell, out)
    curve = progress.read_curve(out / "curve.jsonl")
    if not curve:
        return None
    cache = out / "final.json"
    if cache.exists() and load_json(cache)["steps"] == curve[-1]["steps"]:
        return load_json(cache)
    result = evaluate_disentanglement(
        out, metrics=("mig", "factor_vae", "dci", "sap"), seed=cell[2], checkpoint="last",
        scale=args.metric_scale, decomposition_points=args.decomposition_points,
        options={"mig": {"num_train": 10_000}, "dci": {"n_estimators": args.dci_trees}},
        device="cpu", log=lambda *_: None)
    m, d = result["metrics"], result["decomposition"]
    row = {"objective": cell[0], "beta": cell[1], "seed": cell[2], "steps": curve[-1]["steps"],
           "train_seconds": curve[-1]["train_seconds"], "MIG": m["mig"]["mig"],
           "DCI-D": m["dci"]["disentanglement"], "FactorVAE": m["factor_vae"]["eval_accuracy"],
           "SAP": m["sap"]["sap"], "ELBO": result["test_elbo"], "MI": d["index_code_mi"],
           "TC": d["total_correlation"], "dim-KL": d["dimwise_kl"],
           "active": sum(k >= progress.INACTIVE_KL for k in curve[-1]["kl_per_dim"]),
           "mutual_info": m["mig"]["mutual_info"], "kl_per_dim": curve[-1]["kl_per_dim"],
           "metric_seconds": result["seconds"]}
    cache.write_text(json.dumps(row, indent=1))
    return row


def summary(values: list[float], digits: int = 3) -> str:
    if len(values) < 2:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def table(rows: list[dict], args) -> str:
    lines = ["| objective | β | steps | training s | " + " | ".join(KEYS) + " | seeds |",
             "| --- | --- | --- | --- | " + " | ".join("---" for _ in KEYS) + " | --- |"]
    for obj, beta in args.cells:
        sel = [r for r in rows if (r["objective"], r["beta"]) == (obj, beta)]
        if sel:
            cells_ = [summary([r[k] for r in sel], 1 if k in ("ELBO", "MI", "TC", "dim-KL",
                                                                 "active") else 3)
                      for k in KEYS]
            steps = "/".join(sorted({str(r["steps"]) for r in sel}))
            lines.append(f"| {NAMES[obj]} | {beta:g} | {steps} | "
                         f"{summary([r['train_seconds'] for r in sel], 0)} | "
                         + " | ".join(cells_) + f" | {len(sel)} |")
    lines += ["", "Paired differences, same seed (mean ± sd over seeds; seeds where the first "
              "is higher):", ""]
    first = args.cells[0]
    for other in args.cells[1:]:
        for key in ("MIG", "DCI-D"):
            diffs = [a[key] - b[key] for a in rows for b in rows
                     if (a["objective"], a["beta"]) == first
                     and (b["objective"], b["beta"]) == other and a["seed"] == b["seed"]]
            if diffs:
                lines.append(f"- {key}, {NAMES[first[0]]} − {NAMES[other[0]]}: "
                             f"{summary(diffs)}; {sum(d > 0 for d in diffs)} of {len(diffs)}")
    return "\n".join(lines)


def figures(rows: list[dict], args, folders: list[Path]) -> None:
    """MIG against steps, the KL per latent of seed 0's cells, the best cell's traversals."""
    curves = {f"{NAMES[o]} β={b:g}": [progress.read_curve(folder(args, o, b, s) / "curve.jsonl")
                                      for s in args.seeds] for o, b in args.cells}
    curves = {k: [c for c in v if c] for k, v in curves.items() if any(v)}
    best = max(rows, key=lambda r: r["MIG"])
    model, guide, _ = load_run(folder(args, best["objective"], best["beta"], best["seed"]),
                               "cpu", checkpoint="last")
    labels = progress.factor_of_latents(best["mutual_info"], ground_truth("sprites").factor_names,
                                        best["kl_per_dim"])
    x0 = load_factor_split("sprites", "test").x[0]
    made = {"mig-vs-steps.png": progress.mig_curve_figure(curves, args.batch_size),
            "kl-per-latent.png": progress.kl_curve_figure({k: v[0] for k, v in curves.items()}),
            "traversals.png": progress.labelled_traversals(model, guide, x0, labels,
                                                           best["kl_per_dim"])}
    for name, fig in made.items():
        for where in folders:
            where.mkdir(parents=True, exist_ok=True)
            fig.savefig(where / name, dpi=110)
    print(f"best cell: {NAMES[best['objective']]} β={best['beta']:g} seed {best['seed']}, "
          f"MIG {best['MIG']:.3f}; latents: {labels}")


def report(args) -> None:
    rows = [r for seed in args.seeds for obj, beta in args.cells
            if (r := final_scores(args, (obj, beta, seed))) is not None]
    if not rows:
        raise SystemExit(f"no trained cell in {args.out}: run without --report-only first")
    text = table(rows, args)
    (args.out / "table.md").write_text(text + "\n")
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    docs_figures = FIGURES / args.table if args.table else FIGURES
    figures(rows, args, [args.out] + ([docs_figures] if args.docs else []))
    steps = sorted({r["steps"] for r in rows})
    budget = (f"{steps} steps of batch {args.batch_size} per cell on {args.train_points} "
              f"random sprites, bernoulli_mlp + gaussian_mlp (4096-{args.hidden}-10), Adam lr "
              f"{args.lr}; last weights scored: MIG on 10,000 sprites, the other metrics at × "
              f"{args.metric_scale:g} disentanglement_lib's sample sizes, DCI with "
              f"{args.dci_trees} trees, decomposition on {args.decomposition_points} test images")
    if args.docs:
        write_table(args.table or "disentanglement", text, budget=budget,
                    seeds=", ".join(str(s) for s in sorted({r["seed"] for r in rows})))
    print(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a = p.add_argument
    a("--out", type=Path, default=Path("runs/disentangle"), help="folder of the cells")
    a("--cells", type=parse_cells, default=parse_cells("betatc:6,beta:4,vae"),
      help="objective[:β], comma-separated (default betatc:6,beta:4,vae); the first is "
           "compared with each other one")
    a("--seeds", type=lambda t: [int(s) for s in t.split(",")], default=[0, 1, 2],
      help="seeds, trained one after the other (default 0,1,2)")
    a("--steps", type=int, default=5880, help="training steps per cell (default 5880: 60 "
                                              "epochs of 50,000 at batch 512)")
    a("--eval-every", type=int, default=5, help="epochs per turn between scores (default 5)")
    a("--time-budget", type=float, default=None,
      help="minutes of training before no new turn starts (default: none)")
    a("--report-only", action="store_true", help="score and tabulate the cells as they are")
    a("--train-only", action="store_true", help="train and record the curves, no final table")
    a("--docs", action="store_true", help="also write the docs' table and figures")
    a("--table", default=None,
      help="with --docs: the table's name under docs/benchmarks/tables/ (default "
           "disentanglement), and its figures in docs/figures/disentangle/NAME")
    a("--train-points", type=int, default=50_000, help="random training images (max 50,000)")
    a("--batch-size", type=int, default=512,
      help="default 512 (disentanglement_lib's: 64; Chen et al.'s: 2048)")
    a("--hidden", type=lambda t: [int(w) for w in t.split(",")], default=[256, 256, 256],
      help="hidden widths of both networks (default 256,256,256)")
    a("--lr", type=float, default=1e-3, help="Adam's learning rate (default 1e-3)")
    a("--metric-scale", type=float, default=0.2,
      help="× disentanglement_lib's sample sizes for FactorVAE, DCI, SAP (default 0.2)")
    a("--dci-trees", type=int, default=20, help="trees per DCI classifier (default 20; "
                                                "the library's: 100)")
    a("--valid-points", type=int, default=2000,
      help="validation images: the best-epoch score and the KL per latent (default 2000)")
    a("--decomposition-points", type=int, default=5000,
      help="test images in the ELBO's decomposition (default 5000)")
    args = p.parse_args()
    if args.table and not (args.docs and not args.train_only):
        p.error("--table names the docs' table of a report: add --docs (and drop --train-only)")
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        valid_x = load_factor_split("sprites", "valid", valid=args.valid_points).x[:1000]
        train_cells(args, valid_x)
    if not args.train_only:
        report(args)


if __name__ == "__main__":
    main()
