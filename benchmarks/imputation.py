"""Imputation of cells missing completely at random: the tabular pair trained with the ELBO
and with the MIWAE bound (Mattei & Frellsen 2019) against scikit-learn's imputers.

Datasets that ship with scikit-learn (breast cancer, wine, digits, diabetes, iris); 30% and
50% of the cells removed at random (the same masks for every method); RMSE over the removed
cells of the standardised columns (each column scaled by the mean and sd of its observed
cells), mean ± sd over the masks; seconds per mask. Baselines: ``SimpleImputer`` (mean),
``KNNImputer`` (5 neighbours), ``IterativeImputer`` with ``BayesianRidge`` (MICE) and with
random forests (missForest; ``--forest-trees`` trees, ``--forest-iter`` rounds).

Our pairs (every column ``real``: a Normal with learned scale on the standardised column,
the MIWAE paper's setting) train on the observed cells; the number of epochs is chosen on
a validation split: 10% of the observed cells hidden from training, their imputation RMSE
read ``--checks`` times during training, the best weights kept. The evaluated cells are never read
before the final imputation. Run one dataset per process (``--dataset``); each run saves
its figures in ``--results``, and ``--table`` assembles the page's table from them::

    python benchmarks/imputation.py --dataset iris
    python benchmarks/imputation.py --table
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATASETS = ("breast_cancer", "wine", "digits", "diabetes", "iris")
METHODS = ("mean", "knn", "mice", "missforest", "elbo", "miwae")
NAMES = {"mean": "mean", "knn": "KNN (k=5)", "mice": "MICE", "missforest": "missForest",
         "elbo": "tabular, ELBO", "miwae": "tabular, MIWAE"}


def load(name: str) -> np.ndarray:
    import sklearn.datasets as ds

    x = getattr(ds, f"load_{name}")().data.astype(float)
    return x[:, x.std(0) > 0]  # digits has pixels that never change


def mcar(shape, rate: float, seed: int) -> np.ndarray:
    """True where a cell is observed; each row keeps at least one cell."""
    rng = np.random.default_rng(seed)
    seen = rng.random(shape) >= rate
    empty = ~seen.any(1)
    seen[empty, rng.integers(0, shape[1], empty.sum())] = True
    return seen


def sklearn_impute(method: str, x: np.ndarray, args) -> np.ndarray:
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer
    from sklearn.linear_model import BayesianRidge

    imputer = {"mean": lambda: SimpleImputer(strategy="mean"),
               "knn": lambda: KNNImputer(n_neighbors=5),
               "mice": lambda: IterativeImputer(BayesianRidge(), max_iter=10, random_state=0),
               "missforest": lambda: IterativeImputer(
                   RandomForestRegressor(n_estimators=args.forest_trees, random_state=0),
                   max_iter=args.forest_iter, random_state=0)}[method]()
    return imputer.fit_transform(x)


def pair_impute(objective: str, x: np.ndarray, seen: np.ndarray, args, seed: int):
    """Our pair's imputation of ``x`` (standardised, NaN where missing); epochs chosen on
    10% of the observed cells held out."""
    from guides import make_guide
    from inference import fit
    from inference.data import TensorData
    from inference.miwae import MIWAE
    from inference.owndata.imputation import impute_table
    from models import make_model

    rng = np.random.default_rng(1000 + seed)
    valid = seen & (rng.random(seen.shape) < 0.1)
    train_seen = seen & ~valid
    t = torch.tensor(np.nan_to_num(x), dtype=torch.float32)
    train = TensorData(t, mask=torch.tensor(train_seen))
    d = x.shape[1]
    z_dim = min(d - 1, args.z_dim)
    torch.manual_seed(seed)
    model = make_model("tabular", x_dim=d, z_dim=z_dim, hidden=(128, 128), activation="tanh")
    guide = make_guide("tabular", x_dim=d, z_dim=z_dim, hidden=(128, 128), activation="tanh")
    loss = MIWAE(num_particles=args.particles) if objective == "miwae" else None
    best = {"rmse": float("inf"), "epoch": 0, "state": None}
    truth, held = torch.tensor(np.nan_to_num(x), dtype=torch.float32), torch.tensor(valid)

    per_epoch = -(-len(x) // args.batch_size)
    epochs = -(-args.steps // per_epoch)
    every = max(1, epochs // args.checks)

    def on_epoch(record):
        if record["epoch"] % every and record["epoch"] != epochs:
            return
        filled = impute_table(model, guide, train, num_samples=args.eval_particles).mean
        rmse = float(((filled - truth)[held] ** 2).mean().sqrt())
        if rmse < best["rmse"]:
            best.update(rmse=rmse, epoch=record["epoch"],
                        state=copy.deepcopy((model.state_dict(), guide.state_dict())))

    # divergence=None: the guard compares one-draw ELBOs of a few hundred rows, too noisy here
    fit(model, guide, train, loss=loss, epochs=epochs, batch_size=args.batch_size, lr=1e-3,
        seed=seed, progress=False, on_epoch=on_epoch, report=lambda _: None, divergence=None,
        train_eval_points=256)
    model.load_state_dict(best["state"][0])
    guide.load_state_dict(best["state"][1])
    data = TensorData(t, mask=torch.tensor(seen))  # every observed cell as input
    filled = impute_table(model, guide, data, num_samples=args.eval_particles).mean
    return filled.double().numpy(), best["epoch"]


def run_dataset(name: str, args, save, done: list | None = None) -> dict:
    """Every rate, mask and method on one dataset; ``save(out)`` after each result, so that
    an interrupted run keeps what it measured (the table counts the masks of each cell).
    The results in ``done`` (an earlier run's, at the same settings) are kept, not rerun."""
    full = load(name)
    out = {"n": full.shape[0], "d": full.shape[1], "results": list(done or [])}
    have = {(r["rate"], r["mask"], r["method"]) for r in out["results"]}
    for rate in args.rates:
        for seed in range(args.masks):
            seen = mcar(full.shape, rate, seed)
            x = np.where(seen, full, np.nan)
            mu, sd = np.nanmean(x, 0), np.nanstd(x, 0)
            sd[sd == 0] = 1
            z, zfull = (x - mu) / sd, (full - mu) / sd
            for method in args.methods:
                if (rate, seed, method) in have:
                    continue
                start, epoch = time.perf_counter(), None
                if method in ("elbo", "miwae"):
                    filled, epoch = pair_impute(method, z, seen, args, seed)
                else:
                    filled = sklearn_impute(method, z, args)
                seconds = time.perf_counter() - start
                rmse = float(np.sqrt(((filled - zfull)[~seen] ** 2).mean()))
                out["results"].append({"rate": rate, "mask": seed, "method": method,
                                       "rmse": rmse, "seconds": seconds, "epoch": epoch})
                save(out)
                print(f"{name} rate {rate} mask {seed} {method}: RMSE {rmse:.4f} "
                      f"({seconds:.1f} s{'' if epoch is None else f', epoch {epoch}'})",
                      flush=True)
    return out


def table(results: Path) -> str:
    rows = ["| dataset (N × D) | missing | " + " | ".join(NAMES[m] for m in METHODS) + " |",
            "|---|---|" + "---|" * len(METHODS)]
    for name in DATASETS:
        path = results / f"{name}.json"
        if not path.exists():
            continue
        saved = json.loads(path.read_text())
        for rate in sorted({r["rate"] for r in saved["results"]}):
            cells = []
            for m in METHODS:
                got = [r for r in saved["results"] if r["rate"] == rate and r["method"] == m]
                if not got:
                    cells.append("not run")
                    continue
                v, s = np.array([r["rmse"] for r in got]), np.mean([r["seconds"] for r in got])
                cells.append(f"{v.mean():.3f} ± {v.std():.3f} ({s:.1f} s, {len(v)} masks)")
            rows.append(f"| {name} ({saved['n']} × {saved['d']}) | {rate:.0%} | "
                        + " | ".join(cells) + " |")
    return "\n".join(rows)


def paired(results: Path, ours: str = "miwae", against=("mean", "mice", "missforest")) -> str:
    """``ours`` against each baseline on the same masks: the mean of the per-mask RMSE
    differences (negative: ours lower) ± their sd, and on how many masks ours was lower.
    A mask that makes every method's RMSE large (a column nearly constant in its observed
    cells) moves both sides alike, so the paired difference is the fair comparison."""
    rows = ["| dataset | missing | " + " | ".join(f"{NAMES[ours]} − {NAMES[b]}" for b in against)
            + " |", "|---|---|" + "---|" * len(against)]
    for name in DATASETS:
        path = results / f"{name}.json"
        if not path.exists():
            continue
        saved = json.loads(path.read_text())["results"]
        for rate in sorted({r["rate"] for r in saved}):
            score = {(r["method"], r["mask"]): r["rmse"] for r in saved if r["rate"] == rate}
            cells = []
            for b in against:
                masks = sorted(k for m, k in score if m == ours and (b, k) in score)
                d = np.array([score[ours, k] - score[b, k] for k in masks])
                cells.append("not run" if not len(d) else f"{d.mean():+.3f} ± {d.std():.3f} "
                             f"(lower on {(d < 0).sum()} of {len(d)})")
            rows.append(f"| {name} | {rate:.0%} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def settings(results: Path) -> tuple[str, str]:
    """The budget and seeds of the saved runs, dataset by dataset, as they ran."""
    budget, seeds = [], []
    for name in DATASETS:
        path = results / f"{name}.json"
        if path.exists():
            a = json.loads(path.read_text())["args"]
            budget.append(f"{name}: ≤ {a['steps']} steps of batch {a['batch_size']} (Adam "
                          f"1e-3), K = {a['particles']} for MIWAE, {a['eval_particles']} "
                          f"particles per imputation, best of {a['checks']} validation "
                          f"checks; missForest {a['forest_trees']} trees, {a['forest_iter']} "
                          f"rounds")
            seeds.append(f"{name}: masks 0-{a['masks'] - 1} per rate")
    return "; ".join(budget) or "none run", "; ".join(seeds) or "none"


#: Settings that may differ between the runs that fill one dataset's results.
GROWS = ("rates", "masks", "methods", "table", "results")


def resumable(path: Path, saved: dict) -> list:
    """The results already in ``path`` when they were made at the same settings (a rerun
    adds rates, masks or methods to them); [] when there are none."""
    if not path.exists():
        return []
    before = json.loads(path.read_text())
    same = {k: v for k, v in before["args"].items() if k not in GROWS}
    now = {k: v for k, v in saved.items() if k not in GROWS}
    if same != now:
        differ = sorted(k for k in same.keys() | now.keys() if same.get(k) != now.get(k))
        raise SystemExit(f"error: {path} holds results made with other settings "
                         f"({', '.join(differ)}); give another --results or move it away")
    saved["rates"] = sorted({*before["args"]["rates"], *saved["rates"]})
    saved["masks"] = max(before["args"]["masks"], saved["masks"])
    return before["results"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=DATASETS, help="dataset to run (default: none)")
    p.add_argument("--table", action="store_true", help="write the table from --results")
    p.add_argument("--results", default=".bench/imputation", help="folder of per-dataset "
                   "results (default .bench/imputation)")
    p.add_argument("--rates", type=float, nargs="+", default=[0.3, 0.5],
                   help="shares of cells removed (default 0.3 0.5)")
    p.add_argument("--masks", type=int, default=5, help="random masks per rate (default 5)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                   help=f"methods (default all: {' '.join(METHODS)})")
    p.add_argument("--steps", type=int, default=4000, help="most training steps of our "
                   "pairs (default 4000)")
    p.add_argument("--batch-size", type=int, default=32, help="minibatch (default 32)")
    p.add_argument("--checks", type=int, default=10, help="validation imputations during "
                   "training (default 10)")
    p.add_argument("--particles", type=int, default=20, help="K of MIWAE (default 20)")
    p.add_argument("--eval-particles", type=int, default=100, help="importance particles "
                   "of an imputation (default 100)")
    p.add_argument("--z-dim", type=int, default=10, help="largest latent size; d − 1 when "
                   "smaller (default 10)")
    p.add_argument("--forest-trees", type=int, default=100, help="missForest's trees "
                   "(default 100)")
    p.add_argument("--forest-iter", type=int, default=10, help="missForest's rounds "
                   "(default 10)")
    args = p.parse_args(argv)
    results = Path(args.results)
    if args.dataset:
        torch.set_num_threads(1)
        results.mkdir(parents=True, exist_ok=True)
        saved = {k: v for k, v in vars(args).items() if k != "table"}
        path = results / f"{args.dataset}.json"
        done = resumable(path, saved)
        run_dataset(args.dataset, args,
                    lambda out: path.write_text(json.dumps({**out, "args": saved}, indent=1)),
                    done)
    if args.table:
        from provenance import write_table

        budget, seeds = settings(results)
        body = (table(results) + "\n\nPaired on the same masks (RMSE differences, negative: "
                f"{NAMES['miwae']} lower):\n\n" + paired(results))
        write_table("imputation", body, budget=budget, seeds=seeds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
