"""β-VAE against β-TCVAE (and DIP-VAE-I) on the rendered dSprites, several seeds each.

Chen et al. (2018) report that β-TCVAE beats β-VAE on MIG at equal β; Locatello et al.
(2019) warn that the seed moves the scores as much as the objective does. Each cell
(objective, β, seed) is a ``vae-train`` run folder under ``--out`` (a finished cell is read
back, an interrupted one resumes), scored by ``vae-eval --disentanglement`` for MIG, the
FactorVAE score and DCI, with the test ELBO and the ELBO's decomposition. Writes
``table.md``, ``results.json`` and ``mig-vs-beta.png`` into ``--out``.

    python benchmarks/disentanglement.py --out runs/disentangle   # the full table: 8 to 9 h
    # the docs' table: 26 min at one thread on the 2-core shared CPU
    python benchmarks/disentanglement.py --out runs/dis-small --seeds 0,1,2 --hidden 128 \\
        --steps 1000 --train-points 10000 --valid-points 1000 --metric-scale 0.1 \\
        --dci-trees 10 --decomposition-points 2000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path

import torch

from inference.checkpoint import load_json
from inference.config import RunConfig
from inference.disentangle.evaluate import evaluate_disentanglement
from inference.runs import train_run

COLUMNS = (("MIG", "mig", "mig"), ("FactorVAE", "factor_vae", "eval_accuracy"),
           ("DCI-D", "dci", "disentanglement"))
NAMES = {"beta": "β-VAE", "betatc": "β-TCVAE", "dip1": "DIP-VAE-I"}


def cells(args) -> list[tuple[str, float, int]]:
    """(objective, β, seed), seed by seed, so that a stopped table is balanced. β-TCVAE at
    β = 1 (α = γ = 1) is the ELBO itself, with the same draws and gradients
    (tests/test_disentangle_objectives.py): it is not trained again, β-VAE's cell stands for
    it."""
    return [cell for seed in args.seeds for cell in
            [(obj, beta, seed) for beta in args.betas for obj in ("beta", "betatc")
             if not (obj == "betatc" and beta == 1)]
            + ([("dip1", 1.0, seed)] if args.dip else [])]


def config(obj: str, beta: float, seed: int, args) -> RunConfig:
    steps_per_epoch = math.ceil(args.train_points / args.batch_size)
    return RunConfig(model="bernoulli_mlp", guide="gaussian_mlp", z_dim=10,
                     hidden=tuple(args.hidden), dataset="sprites",
                     train_limit=args.train_points, valid=args.valid_points,
                     loss="trace" if obj == "beta" else obj,
                     beta=beta, epochs=max(1, round(args.steps / steps_per_epoch)),
                     batch_size=args.batch_size, lr=args.lr, seed=seed, device=args.device)


def run_cell(obj: str, beta: float, seed: int, args) -> dict:
    folder = args.out / f"{obj}-b{beta:g}-s{seed}"
    scored = folder / ("disentanglement" + (f"-seed{seed}" if seed else "")
                       + ("" if args.metric_scale == 1 else f"-scale{args.metric_scale:g}")
                       + ".json")  # the name evaluate_disentanglement writes
    if not (folder / "metrics.json").exists():
        train_run(config(obj, beta, seed, args), folder,
                  resume=(folder / "checkpoint.pt").exists(), progress=False,
                  figures=("traversals",), tensorboard=False, log=lambda *_: None)
    if not scored.exists():
        evaluate_disentanglement(folder, metrics=("mig", "factor_vae", "dci"), seed=seed,
                                 scale=args.metric_scale, device=args.device,
                                 decomposition_points=args.decomposition_points,
                                 options={"dci": {"n_estimators": args.dci_trees}},
                                 log=lambda *_: None)
    result, metrics = load_json(scored), load_json(folder / "metrics.json")
    row = {name: result["metrics"][m][k] for name, m, k in COLUMNS}
    return {"objective": obj, "beta": beta, "seed": seed, **row, "ELBO": result["test_elbo"],
            "TC": result["decomposition"]["total_correlation"],
            "steps": sum(r["steps"] for r in metrics["history"]),
            "train_seconds": sum(r["seconds"] for r in metrics["history"])}


def summary(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def table(rows: list[dict], args) -> str:
    keys = ("MIG", "FactorVAE", "DCI-D", "ELBO", "TC")
    lines = ["| objective | β | " + " | ".join(keys) + " | seeds |",
             "| --- | --- | " + " | ".join("---" for _ in keys) + " | --- |"]
    groups = sorted({(r["objective"], r["beta"]) for r in rows},
                    key=lambda g: (list(NAMES).index(g[0]), g[1]))
    for obj, beta in groups:
        sel = [r for r in rows if (r["objective"], r["beta"]) == (obj, beta)]
        cells_ = [summary([r[k] for r in sel]) for k in keys]
        label = "–" if obj == "dip1" else f"{beta:g}" + (
            " (= β-VAE: the same objective)" if sel[0].get("same_as_beta_vae") else "")
        lines.append(f"| {NAMES[obj]} | {label} | " + " | ".join(cells_) + f" | {len(sel)} |")
    lines += ["", "β-TCVAE − β-VAE on MIG, same seed (mean ± std over seeds; seeds where "
              "β-TCVAE is higher):", ""]
    for beta in args.betas:
        pairs = [(a["MIG"], b["MIG"]) for a in rows for b in rows
                 if a["objective"] == "betatc" and b["objective"] == "beta"
                 and a["beta"] == b["beta"] == beta and a["seed"] == b["seed"]]
        if pairs:
            diffs = [a - b for a, b in pairs]
            lines.append(f"- β = {beta:g}: {summary(diffs)}; {sum(d > 0 for d in diffs)} of "
                         f"{len(diffs)}")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5, 3.2))
    ax = fig.add_subplot()
    for obj, marker in (("beta", "o"), ("betatc", "s")):
        for r in rows:
            if r["objective"] == obj:
                ax.plot(r["beta"], r["MIG"], marker, color="C0" if obj == "beta" else "C1",
                        alpha=0.4)
        betas = sorted({r["beta"] for r in rows if r["objective"] == obj})
        means = [statistics.mean(r["MIG"] for r in rows if r["objective"] == obj
                                 and r["beta"] == b) for b in betas]
        ax.plot(betas, means, "-" + marker, color="C0" if obj == "beta" else "C1",
                label=NAMES[obj])
    ax.set_xlabel("β")
    ax.set_ylabel("MIG")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a = p.add_argument
    a("--out", type=Path, default=Path("runs/disentangle"))
    a("--betas", type=lambda t: [float(b) for b in t.split(",")], default=[1.0, 4.0, 8.0])
    a("--seeds", type=lambda t: [int(s) for s in t.split(",")], default=[0, 1, 2])
    a("--no-dip", dest="dip", action="store_false", help="leave DIP-VAE-I out")
    a("--steps", type=int, default=6000, help="training steps per cell (default 6000)")
    a("--train-points", type=int, default=50_000, help="random training images (max 50,000)")
    a("--batch-size", type=int, default=64)
    a("--hidden", type=lambda t: [int(w) for w in t.split(",")], default=[256])
    a("--lr", type=float, default=1e-3)
    a("--metric-scale", type=float, default=1.0, help="× disentanglement_lib's sample sizes")
    a("--dci-trees", type=int, default=100, help="trees per DCI classifier (library: 100)")
    a("--valid-points", type=int, default=None,
      help="validation images scored each epoch (default: the dataset's 5,000)")
    a("--decomposition-points", type=int, default=5000,
      help="test images in the ELBO's decomposition (q(z) over all of them)")
    a("--device", default="auto")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows, start = [], time.perf_counter()
    for obj, beta, seed in cells(args):
        t = time.perf_counter()
        rows.append(run_cell(obj, beta, seed, args))
        print(f"{NAMES[obj]} β={beta:g} seed {seed}: " + "  ".join(
            f"{k} {rows[-1][k]:.3f}" for k in ("MIG", "FactorVAE", "DCI-D", "ELBO", "TC"))
            + f"  ({time.perf_counter() - t:.0f} s)", flush=True)
    rows += [{**r, "objective": "betatc", "same_as_beta_vae": True} for r in list(rows)
             if r["objective"] == "beta" and r["beta"] == 1]
    steps = sorted({r["steps"] for r in rows})
    head = (f"Budget: {steps} steps of batch {args.batch_size} per cell on {args.train_points} "
            f"random sprites, bernoulli_mlp + gaussian_mlp (4096-{args.hidden}-10), Adam lr "
            f"{args.lr}; seeds {args.seeds}; metrics at × {args.metric_scale:g} "
            f"disentanglement_lib's sample sizes, DCI with {args.dci_trees} trees, "
            f"decomposition on {args.decomposition_points} test images; "
            f"{time.perf_counter() - start:.0f} s this session, {torch.get_num_threads()} "
            f"thread(s) of {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} "
            f"at the end.")
    text = head + "\n\n" + table(rows, args) + "\n"
    (args.out / "table.md").write_text(text)
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    plot(rows, args.out / "mig-vs-beta.png")
    print(text)


if __name__ == "__main__":
    main()
