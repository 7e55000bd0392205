"""Semi-supervised M2 (Kingma et al. 2014) on MNIST: test accuracy of q(y | x) after every
epoch, beside Pyro's own ``ss_vae_M2`` example's curve at the same epochs, measured by running
the example on this machine (``benchmarks/pyro_m2.py``).

The example's documented settings: ``m2`` model and guide (500 hidden units, 50 latents,
every Linear initialised from N(0, 1e-3) as in the example's ``utils/custom_mlp.py``),
``SemiSupervisedELBO`` (TraceEnum_ELBO with y enumerated on unlabelled batches + 46 × the
classifier's cross-entropy on labelled ones), Adam lr 4.2e-4 β1 0.95, batch 100, labelled
batches spread over each epoch. All trained by ``fit``. ``--model conditional_mlp
--init-std none`` gives the pair with PyTorch's default initialisation, to see the gap.

    python benchmarks/pyro_m2.py --pyro-repo PYRO_GIT_DIR --epochs 3 --seeds 0,1,2
    python benchmarks/m2.py --labels 100 --epochs 3 --seeds 0,1,2 \\
        --pyro .bench/pyro/pyro-m2-100-3.json --table m2-100-3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from provenance import write_table

from guides import make_guide
from inference import fit, load_dataset
from inference.semisupervised import SemiSupervisedData, SemiSupervisedELBO, TwinStepAdam, accuracy
from models import make_model

#: Pyro's tutorial, 50 epochs, mean over 5 label draws.
PYRO_TUTORIAL = {100: 0.9319, 600: 0.9437, 1000: 0.9487, 3000: 0.9582}


def run(labels: int, seed: int, args, train, test, valid=None) -> dict:
    data = SemiSupervisedData.split(train, labels, seed=seed,
                                    labelled_every=args.labelled_every)
    if args.unlabelled:
        data = SemiSupervisedData(data.labelled, data.unlabelled.subset(args.unlabelled, seed=seed),
                                  labelled_every=args.labelled_every)
    torch.manual_seed(seed)
    init = {} if args.init_std == "default" else {
        "init_std": None if args.init_std == "none" else float(args.init_std)}
    model = make_model(args.model, **(init if args.model == "m2" else {}))
    guide = make_guide("m2", **init)
    adam = TwinStepAdam if args.twin_step_adam else torch.optim.Adam
    curve, checks, start = [], [], time.perf_counter()
    fit(model, guide, data, loss=SemiSupervisedELBO(alpha=46.0), epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, seed=seed, progress=False, train_eval_points=0,
        optimizer=lambda p: adam(p, lr=args.lr, betas=(args.beta1, 0.999)),
        on_epoch=lambda r: (curve.append(accuracy(guide, test)),
                            valid is not None and checks.append(accuracy(guide, valid))))
    return {"labels": labels, "seed": seed, "accuracy": curve, "valid_accuracy": checks,
            "settings": settings(args),
            "seconds": round(time.perf_counter() - start, 1)}


def settings(args) -> str:
    """What differs from the example's documented settings, in words ('' for nothing)."""
    out = [f"lr {args.lr:g}"] if args.lr != 4.2e-4 else []
    out += ["twin-step Adam"] if args.twin_step_adam else []
    out += [f"a labelled batch every {args.labelled_every}"] if args.labelled_every else []
    out += [f"pixels {args.binarize}"] if args.binarize != "dynamic" else []
    out += [f"{args.valid} held out"] if args.valid else []
    return ", ".join(out)


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}" if len(values) > 1 else f"{values[0]:.4f}"


def _name(r: dict) -> str:
    if "command" in r:
        return "Pyro's `ss_vae_M2.py`"
    return f"lab `m2` (fit, {r['settings']})" if r.get("settings") else "lab `m2` (fit)"


def table(ours: list[dict], pyro: list[dict]) -> str:
    """Markdown: one row per run (settings, labels, seed), accuracy after each epoch, then
    the mean ± sd of the last epoch over seeds for each settings and label count."""
    rows = ours + pyro
    epochs = max(len(r["accuracy"]) for r in rows)
    head = "| run | labels | seed | " + " | ".join(f"epoch {e + 1}" for e in range(epochs))
    lines = [head + " | time (s) |", "|---" * (epochs + 4) + "|"]
    for r in rows:
        cells = [f"{a:.4f}" for a in r["accuracy"]] + [""] * (epochs - len(r["accuracy"]))
        lines.append(f"| {_name(r)} | {r['labels']} | {r['seed']} | " + " | ".join(cells)
                     + f" | {r['seconds']:.0f} |")
    lines += ["", "| run | labels | seeds | last epoch, mean ± sd |", "|---|---|---|---|"]
    groups = dict.fromkeys((_name(r), r["labels"]) for r in rows)
    for name, labels in groups:
        last = [r["accuracy"][-1] for r in rows if (_name(r), r["labels"]) == (name, labels)]
        lines.append(f"| {name} | {labels} | {len(last)} | {_mean_sd(last)} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--labels", default="100", help="comma-separated label counts (default 100)")
    p.add_argument("--epochs", type=int, default=3, help="epochs (default 3; Pyro's: 50)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    p.add_argument("--unlabelled", type=int, default=None,
                   help="cap on unlabelled points (default: all)")
    p.add_argument("--model", default="m2", choices=["m2", "conditional_mlp"],
                   help="model (default m2)")
    p.add_argument("--init-std", default="default",
                   help="Linear init sd: 'default' (the pair's, 1e-3), 'none' (PyTorch's) "
                        "or a number")
    p.add_argument("--batch-size", type=int, default=100, help="batch (default 100, Pyro's)")
    p.add_argument("--lr", type=float, default=4.2e-4, help="Adam lr (default 4.2e-4)")
    p.add_argument("--beta1", type=float, default=0.95, help="Adam β1 (default 0.95)")
    p.add_argument("--twin-step-adam", action="store_true",
                   help="Adam as the example runs it: a second step on zero gradients after "
                        "each (inference.semisupervised.TwinStepAdam; default off)")
    p.add_argument("--labelled-every", type=int, default=None,
                   help="a labelled batch after every N unlabelled ones, cycling the labels "
                        "(default: each label once per epoch, as the example)")
    p.add_argument("--binarize", default="dynamic", choices=["dynamic", "none"],
                   help="training pixels: fresh Bernoulli draws or grey levels as the example "
                        "(default dynamic)")
    p.add_argument("--valid", type=int, default=0,
                   help="training images held out for validation accuracy, as the example's 10000 "
                        "(default 0)")
    p.add_argument("--pyro", type=Path, action="append", default=[],
                   help="JSON of benchmarks/pyro_m2.py to print beside ours (repeatable)")
    p.add_argument("--out", type=Path, default=None, help="JSON of our curves (default none)")
    p.add_argument("--ours", type=Path, default=None,
                   help="JSON of an earlier --out: tabulate it instead of training (default none)")
    p.add_argument("--table", default=None,
                   help="write docs/benchmarks/tables/TABLE.md (default: print only)")
    args = p.parse_args(argv)
    ours = json.loads(args.ours.read_text()) if args.ours else []
    train = None if args.ours else load_dataset("mnist", "train", download=False,
                                                binarize=args.binarize, valid=args.valid)
    test = None if args.ours else load_dataset("mnist", "test", download=False)
    valid = None if args.ours or not args.valid else load_dataset(
        "mnist", "valid", download=False, valid=args.valid)
    for labels in [] if args.ours else map(int, args.labels.split(",")):
        for seed in map(int, args.seeds.split(",")):
            ours.append(run(labels, seed, args, train, test, valid))
            print(f"lab m2, {labels} labels, seed {seed}: test accuracy by epoch "
                  + " ".join(f"{a:.4f}" for a in ours[-1]["accuracy"])
                  + (" (validation " + " ".join(f"{a:.4f}" for a in ours[-1]["valid_accuracy"])
                     + ")" if valid is not None else "")
                  + f" ({ours[-1]['seconds']:.0f} s)", flush=True)
            if args.out:
                args.out.write_text(json.dumps(ours, indent=1) + "\n")
    missing = [path for path in args.pyro if not path.exists()]
    if missing:
        print(f"warning: {', '.join(map(str, missing))} not found; Pyro's curve left out")
    pyro = [r for path in args.pyro if path.exists() for r in json.loads(path.read_text())
            if r["epochs"] == args.epochs and r["labels"] in {o["labels"] for o in ours}]
    text = table(ours, pyro)
    print("\n" + text)
    if args.table:
        write_table(args.table, text, budget=f"{args.epochs} epochs, batch {args.batch_size}, "
                    f"Adam lr {args.lr} β1 {args.beta1}, all unlabelled points unless capped "
                    f"({args.unlabelled}); Pyro's example at the same epochs and settings",
                    seeds=args.seeds)


if __name__ == "__main__":
    main()
