"""Semi-supervised M2 (Kingma et al. 2014) on MNIST: test accuracy of q(y | x) for several
numbers of labels, next to Pyro's ``ss_vae_M2`` example (0.9319 / 0.9437 / 0.9487 / 0.9582
with 100 / 600 / 1000 / 3000 labels after 50 epochs).

The same configuration as Pyro's example: ``conditional_mlp`` model and ``m2`` guide with
500 hidden units and 50 latents, ``SemiSupervisedELBO`` (TraceEnum_ELBO with y enumerated
on unlabelled batches + 46 × the classifier's cross-entropy on labelled ones), Adam lr
4.2e-4, batch 200, labelled batches spread over each epoch. All trained by ``fit``.
``--unlabelled`` caps the unlabelled set and ``--epochs`` the passes: the CPU budget.

    python benchmarks/m2.py --labels 100,3000 --epochs 2 --unlabelled 20000
"""

from __future__ import annotations

import argparse
import time

import torch

from guides import make_guide
from inference import fit, load_dataset
from inference.semisupervised import SemiSupervisedData, SemiSupervisedELBO, accuracy
from models import make_model

PYRO = {100: 0.9319, 600: 0.9437, 1000: 0.9487, 3000: 0.9582}


def run(labels: int, args, train, test) -> dict:
    data = SemiSupervisedData.split(train, labels, seed=args.seed)
    if args.unlabelled:
        data = SemiSupervisedData(data.labelled,
                                  data.unlabelled.subset(args.unlabelled, seed=args.seed))
    model, guide = make_model("conditional_mlp"), make_guide("m2")
    start = time.perf_counter()
    curve = []
    fit(model, guide, data, loss=SemiSupervisedELBO(alpha=46.0), epochs=args.epochs,
        batch_size=200, lr=4.2e-4, seed=args.seed, progress=False, train_eval_points=0,
        on_epoch=lambda r: curve.append(accuracy(guide, test)))
    return {"labels": labels, "unlabelled": len(data.unlabelled), "accuracy": curve[-1],
            "curve": curve, "seconds": time.perf_counter() - start}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--labels", default="100,600,1000,3000")
    p.add_argument("--epochs", type=int, default=50, help="Pyro's example: 50")
    p.add_argument("--unlabelled", type=int, default=None, help="cap on unlabelled points")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    train = load_dataset("mnist", "train", download=False)
    test = load_dataset("mnist", "test", download=False, seed=args.seed)
    rows = []
    for labels in map(int, args.labels.split(",")):
        rows.append(run(labels, args, train, test))
        r = rows[-1]
        print(f"{labels} labels: accuracy {r['accuracy']:.4f} after {args.epochs} epochs "
              f"({r['seconds']:.0f} s; per epoch {', '.join(f'{a:.3f}' for a in r['curve'])})",
              flush=True)
    print("\n| labels | unlabelled | epochs | ours | Pyro's example (50 epochs) | time (s) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['labels']} | {r['unlabelled']} | {args.epochs} | {r['accuracy']:.4f} | "
              f"{PYRO.get(r['labels'], float('nan')):.4f} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
