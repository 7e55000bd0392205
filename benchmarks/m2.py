"""Semi-supervised M2 (Kingma et al. 2014) on MNIST: test accuracy of q(y | x) after every
epoch, beside Pyro's own ``ss_vae_M2`` example's curve at the same epochs, measured by running
the example on this machine (``benchmarks/pyro_m2.py``).

The example's documented settings: ``m2`` model and guide (500 hidden units, 50 latents,
hidden layers initialised from N(0, 1e-3²) as in the example's ``utils/custom_mlp.py``),
``SemiSupervisedELBO`` (TraceEnum_ELBO with y enumerated on unlabelled batches + 46 × the
classifier's cross-entropy on labelled ones), Adam lr 4.2e-4 β1 0.95, batch 100, trained by
``fit``. ``--valid 10000`` trains on the example's 50,000 images and prints the validation
accuracy, on which settings are chosen. The labelled batches: ``vae-train``'s default, one
after every unlabelled batch (``--labelled-every 1``), or the example's, each label once
per epoch (``--labelled-every 0``: with 100 labels, one labelled batch in 500).
``--labelled-weight epoch`` weighs the labelled ELBO by 1/(passes over the labels per
epoch), so that served 500 times an epoch the 100 labelled images weigh in the generative
model's gradient as each unlabelled one does (the classification term keeps its α).
``--twin-step-adam`` adds the example's extra zero-gradient Adam step
(:class:`inference.semisupervised.TwinStepAdam`); ``--model conditional_mlp --init-std
none`` gives the pair with PyTorch's default initialisation.

    python benchmarks/pyro_m2.py --pyro-repo PYRO_GIT_DIR --epochs 3 --seeds 0,1,2
    python benchmarks/m2.py --labels 100 --epochs 3 --seeds 0,1,2 --valid 10000 \\
        --pyro .bench/pyro/pyro-m2-100-3.json --table m2-100-3
"""

from __future__ import annotations

import argparse
import json
import statistics
import textwrap
import time
from pathlib import Path

import torch
from provenance import write_table

from guides import make_guide
from inference import fit, load_dataset
from inference.semisupervised import SemiSupervisedData, SemiSupervisedELBO, TwinStepAdam, accuracy
from inference.train import cosine_schedule
from inference.validate import non_negative_float, positive_int
from models import make_model

#: --grey's likelihoods of the m2 model, in words.
GREY = {"continuous_bernoulli": "continuous Bernoulli",
        "grey_cross_entropy": "Bernoulli cross-entropy (the example's)"}

#: Pyro's tutorial, 50 epochs, mean over 5 label draws.
PYRO_TUTORIAL = {100: 0.9319, 600: 0.9437, 1000: 0.9487, 3000: 0.9582}


def run(labels: int, seed: int, args, train, test, valid=None) -> dict:
    every = args.labelled_every or None  # 0: the example's schedule
    data = SemiSupervisedData.split(train, labels, seed=seed, labelled_every=every)
    if args.unlabelled:
        data = SemiSupervisedData(data.labelled, data.unlabelled.subset(args.unlabelled, seed=seed),
                                  labelled_every=every)
    torch.manual_seed(seed)
    init = {} if args.init_std == "default" else {
        "init_std": None if args.init_std == "none" else float(args.init_std)}
    hidden = {"hidden": tuple(args.hidden), "z_dim": args.z_dim}
    grey = {"likelihood": args.grey} if args.grey else {}
    model = make_model(args.model, **hidden, **grey, **(init if args.model == "m2" else {}))
    guide = make_guide("m2", **hidden, **init)
    adam = TwinStepAdam if args.twin_step_adam else torch.optim.Adam
    curve, checks, start = [], [], time.perf_counter()

    def score(_record) -> None:  # test accuracy after each epoch, validation's when held out
        curve.append(accuracy(guide, test))
        if valid is not None:
            checks.append(accuracy(guide, valid))
        if args.verbose:
            print(f"  epoch {len(curve)}: test {curve[-1]:.4f}"
                  + (f", validation {checks[-1]:.4f}" if checks else ""), flush=True)

    schedule = cosine_schedule(args.epochs) if args.schedule == "cosine" else None
    weight = (1 / data.labelled_passes(args.batch_size) if args.labelled_weight == "epoch"
              else float(args.labelled_weight))
    loss = SemiSupervisedELBO(alpha=args.alpha, labelled_weight=weight)
    fit(model, guide, data, loss=loss, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, seed=seed, progress=False, train_eval_points=0,
        lr_schedule=schedule,
        optimizer=lambda p: adam(p, lr=args.lr, betas=(args.beta1, 0.999)), on_epoch=score)
    return {"labels": labels, "seed": seed, "accuracy": curve, "valid_accuracy": checks,
            "settings": settings(args),
            "seconds": round(time.perf_counter() - start, 1)}


def settings(args) -> str:
    """What differs from the example's documented settings, in words ('' for nothing)."""
    out = [f"lr {args.lr:g}"] if args.lr != 4.2e-4 else []
    out += [f"α {args.alpha:g}"] if args.alpha != 46 else []
    out += [f"hidden {'-'.join(map(str, args.hidden))}"] if list(args.hidden) != [500] else []
    out += [f"z {args.z_dim}"] if args.z_dim != 50 else []
    out += ["twin-step Adam"] if args.twin_step_adam else []
    out += ["cosine lr decay"] if args.schedule == "cosine" else []
    out += [f"grey levels, {GREY[args.grey]}"] if args.grey else []
    out += [f"batch {args.batch_size}"] if args.batch_size != 100 else []
    out += [f"β1 {args.beta1:g}"] if args.beta1 != 0.95 else []
    out += [f"{args.unlabelled} unlabelled points"] if args.unlabelled else []
    out += [f"a labelled batch every {args.labelled_every}"] if args.labelled_every else []
    out += [f"labelled ELBO × {args.labelled_weight}"] if args.labelled_weight != "1" else []
    out += [f"{args.valid} held out"] if args.valid else []
    return ", ".join(out)


def _weight(text: str) -> str:
    """--labelled-weight: 'epoch' or a finite number ≥ 0 (the lab's check), kept as written
    (it names the run)."""
    try:
        if text != "epoch":
            non_negative_float("--labelled-weight", float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither 'epoch' nor a number ≥ 0"
                                         ) from None
    return text


def _positive(text: str) -> int:
    """--z-dim: a whole number ≥ 1 (the lab's check)."""
    try:
        return positive_int("--z-dim", int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number ≥ 1") from None


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}" if len(values) > 1 else f"{values[0]:.4f}"


def _name(r: dict) -> str:
    if "command" in r:
        return "Pyro's `ss_vae_M2.py`"
    said = r.get("settings", "")
    if "labelled batch every" not in said:  # --labelled-every 0
        said = ", ".join(filter(None, ["each label once per epoch", said]))
    return f"lab `m2` (fit, {said})"


def chosen(r: dict) -> tuple[float, int] | None:
    """Test accuracy at the epoch of best validation accuracy (the first such epoch), and that
    epoch: the example's "corresponding testing accuracy"; None without validation."""
    valid = r.get("valid_accuracy") or r.get("validation")
    if not valid:
        return None
    best = max(range(len(valid)), key=lambda e: (valid[e], -e))
    return r["accuracy"][best], best + 1


def table(ours: list[dict], pyro: list[dict]) -> str:
    """Markdown: one row per run (settings, labels, seed), accuracy after each epoch, the
    test accuracy at the best validation epoch, then the mean ± sd over seeds of the last
    epoch and of the test accuracy so chosen, for each settings and label count, beside
    Pyro's tutorial's figure for that label count when the runs are 50 epochs (its budget)."""
    rows = ours + pyro
    epochs = max(len(r["accuracy"]) for r in rows)
    head = "| run | labels | seed | " + " | ".join(f"epoch {e + 1}" for e in range(epochs))
    lines = [head + " | validation, last epoch | test at best validation (epoch) | time (s) |",
             "|---" * (epochs + 6) + "|"]
    for r in rows:
        cells = [f"{a:.4f}" for a in r["accuracy"]] + [""] * (epochs - len(r["accuracy"]))
        valid, pick = r.get("valid_accuracy") or r.get("validation"), chosen(r)
        lines.append(f"| {_name(r)} | {r['labels']} | {r['seed']} | " + " | ".join(cells)
                     + f" | {f'{valid[-1]:.4f}' if valid else '–'} | "
                     + (f"{pick[0]:.4f} ({pick[1]})" if pick else "–") + f" | {r['seconds']:.0f} |")
    lines += ["", "| run | labels | seeds | last epoch, mean ± sd | test at best validation, "
              "mean ± sd | Pyro's tutorial (50 epochs, 5 label draws) |", "|---" * 6 + "|"]
    groups = dict.fromkeys((_name(r), r["labels"]) for r in rows)
    for name, labels in groups:
        group = [r for r in rows if (_name(r), r["labels"]) == (name, labels)]
        picks = [chosen(r) for r in group]
        at_best = _mean_sd([p[0] for p in picks]) if all(picks) else "–"
        tutorial = PYRO_TUTORIAL.get(labels) if epochs == 50 else None  # its budget only
        lines.append(f"| {name} | {labels} | {len(group)} | "
                     f"{_mean_sd([r['accuracy'][-1] for r in group])} | {at_best} | "
                     + (f"{tutorial:.4f} |" if tutorial else "– |"))
    return "\n".join(lines)


def figure(rows: list[dict], path: Path) -> Path:
    """Test accuracy against epochs, one line per run, a colour per settings and, when the
    runs differ in it, label count."""
    import matplotlib.pyplot as plt

    counts = len({r["labels"] for r in rows}) > 1

    def key(r: dict) -> str:
        return _name(r) + (f", {r['labels']} labels" if counts else "")

    fig, ax = plt.subplots(figsize=(7.2, 4.2 + 0.35 * len({key(r) for r in rows})))
    colours: dict[str, str] = {}
    for r in rows:
        name = key(r)
        first = name not in colours
        colour = colours.setdefault(name, f"C{len(colours)}")
        epochs = range(1, len(r["accuracy"]) + 1)
        label = textwrap.fill(name.replace("`", ""), 90)  # long settings fit the legend
        ax.plot(epochs, r["accuracy"], "o-", color=colour, alpha=0.8,
                label=label if first else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy of q(y | x)")
    epochs = max(len(r["accuracy"]) for r in rows)
    ax.set_xticks(range(1, epochs + 1, max(1, epochs // 10)))  # at most ~10 labels
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15))  # below the axes
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


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
    p.add_argument("--alpha", type=float, default=46.0,
                   help="weight of the classifier's cross-entropy on a labelled batch "
                        "(default 46, the example's -alm)")
    p.add_argument("--hidden", type=lambda t: [int(w) for w in t.split(",")], default=[500],
                   help="hidden widths of every network of the pair (default 500, Pyro's)")
    p.add_argument("--z-dim", type=_positive, default=50,
                   help="latent dimension of the model and guide (default 50, Pyro's)")
    p.add_argument("--batch-size", type=int, default=100, help="batch (default 100, Pyro's)")
    p.add_argument("--lr", type=float, default=4.2e-4, help="Adam lr (default 4.2e-4)")
    p.add_argument("--beta1", type=float, default=0.95, help="Adam β1 (default 0.95)")
    p.add_argument("--schedule", choices=("constant", "cosine"), default="constant",
                   help="learning rate over the epochs: constant (default, the example's) or "
                        "cosine decay to nearly 0 in the last epoch "
                        "(inference.train.cosine_schedule)")
    p.add_argument("--grey", nargs="?", const="continuous_bernoulli", choices=list(GREY),
                   default=None,
                   help="grey-level images (not dynamically binarized) for training and testing, "
                        "scored by a continuous Bernoulli likelihood (a density; the value when "
                        "none is given) or by grey_cross_entropy, the example's Bernoulli "
                        "cross-entropy with the support check off (default off: binarized)")
    p.add_argument("--twin-step-adam", action="store_true",
                   help="Adam as the example runs it: a second step on zero gradients after "
                        "each (inference.semisupervised.TwinStepAdam; default off)")
    p.add_argument("--labelled-every", type=int, default=1,
                   help="a labelled batch after every N unlabelled ones, cycling the labels "
                        "(default 1, vae-train's); 0: each label once per epoch, as the example")
    p.add_argument("--labelled-weight", default="1", type=_weight,
                   help="weight of the labelled ELBO (not of the classification term); 'epoch': "
                        "1/passes over the labels per epoch, each labelled point's ELBO once "
                        "per epoch (default 1)")
    p.add_argument("--valid", type=int, default=0,
                   help="training images held out for validation accuracy, as the example's 10000 "
                        "(default 0)")
    p.add_argument("--verbose", action="store_true",
                   help="print the accuracies after every epoch as they come (default off)")
    p.add_argument("--pyro", type=Path, action="append", default=[],
                   help="JSON of benchmarks/pyro_m2.py to print beside ours (repeatable)")
    p.add_argument("--out", type=Path, default=None, help="JSON of our curves (default none)")
    p.add_argument("--ours", type=Path, action="append", default=[],
                   help="JSON of an earlier --out: tabulate it instead of training "
                        "(repeatable; default none)")
    p.add_argument("--table", default=None,
                   help="write docs/benchmarks/tables/TABLE.md (default: print only)")
    args = p.parse_args(argv)
    refuse_training_flags(p, args)
    ours = [r for path in args.ours for r in json.loads(path.read_text())]
    binarize = "none" if args.grey else "dynamic"
    train = None if args.ours else load_dataset("mnist", "train", download=False,
                                                binarize=binarize, valid=args.valid)
    test = None if args.ours else load_dataset("mnist", "test", download=False,
                                               binarize=binarize)
    valid = None if args.ours or not args.valid else load_dataset(
        "mnist", "valid", download=False, valid=args.valid, binarize=binarize)
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
        write(args, ours, pyro, text)


def write(args, ours: list[dict], pyro: list[dict], text: str) -> None:
    """The table (with its provenance line) and the figure under docs/."""
    folder = Path(__file__).resolve().parent.parent / "docs" / "figures" / "m2"
    print(f"wrote {figure(ours + pyro, folder / f'{args.table}.png')}")
    if args.ours:  # each row's label names what differs from the example's settings
        budget = (f"{args.epochs} epochs; the lab's rows read from saved runs (--ours), each "
                  "trained as its own process at 1 thread with the example's settings (batch "
                  "100, Adam lr 0.00042 β1 0.95, α 46, z 50, hidden 500, all unlabelled "
                  "points, binarized) but for what its label names")
    else:
        capped = f"{args.unlabelled} unlabelled points" if args.unlabelled else \
            "all unlabelled points"
        budget = (f"{args.epochs} epochs, batch {args.batch_size}, Adam lr {args.lr} β1 "
                  f"{args.beta1}, {capped}" + (f", {settings(args)}" if settings(args) else ""))
    seeds = ",".join(map(str, sorted({r["seed"] for r in ours + pyro})))
    peer = "; Pyro's example at the same epochs and its documented settings" if pyro else ""
    write_table(args.table, text, seeds=seeds, budget=budget + peer)


#: Flags that only train; with --ours (runs read from files) they would do nothing.
TRAINING = ("labels", "seeds", "unlabelled", "model", "init_std", "alpha", "hidden", "z_dim",
            "batch_size", "lr", "beta1", "schedule", "grey", "twin_step_adam", "labelled_every",
            "labelled_weight", "valid", "verbose", "out")


def refuse_training_flags(parser: argparse.ArgumentParser, args) -> None:
    """With --ours, refuse in one line any training flag given: it would do nothing."""
    given = [f"--{name.replace('_', '-')}" for name in TRAINING
             if getattr(args, name) != parser.get_default(name)]
    if args.ours and given:
        one = len(given) == 1
        parser.error(f"{', '.join(given)} {'is a training flag' if one else 'are training flags'}"
                     ", but --ours reads runs already trained (each file holds its settings); "
                     f"drop {'it' if one else 'them'}")


if __name__ == "__main__":
    main()
