"""Anomaly AUROC (MNIST test vs Fashion-MNIST test) and quadrant completion of a trained run.

(a) Scores −log p̂(x) (``iw_log_likelihood``, K importance samples) on the run's test set and
on Fashion-MNIST's, both binarized as the run's test set is (``load_dataset`` gives a test
split one fixed Bernoulli draw, seeded by the run's seed), and prints the AUROC.

(b) −log p(missing quadrants | given ones), nats per image, for 1, 2 and 3 given quadrants
(Pyro's examples/cvae convention: bottom-left, left half, all but bottom-right), next to
the figures Pyro's CVAE tutorial publishes. Two columns: on the binarized test images (a
likelihood), and on grey-level images scored by the Bernoulli cross-entropy, as Pyro's
example scores its ``to_tensor`` grey levels. Protocols differ; see ``NOTE``.

    vae-train --dataset mnist --out runs/mnist10                # the foundation's model
    python benchmarks/variants_eval.py --run runs/mnist10
    python benchmarks/variants_eval.py --run runs/a --auroc-points 2000 --quadrant-k 5000
"""

from __future__ import annotations

import argparse
import time

import pyro
from provenance import write_table

from inference import load_run
from inference.anomaly import anomaly_auroc
from inference.config import RunConfig
from inference.datasets import load_dataset
from inference.impute import conditional_log_likelihood, quadrant_mask

# Pyro's CVAE tutorial (pyro.ai/examples/cvae.html), NLL per image in nats, given 1/2/3.
PYRO = {"CVAE": {1: 71.8, 2: 51.0, 3: 24.2}, "baseline NN": {1: 100.4, 2: 61.9, 3: 25.4}}
NOTE = """Protocol differences. Pyro trains one CVAE (and one deterministic baseline network)
per number of given quadrants, on grey-level MNIST; its CVAE figure is Trace_ELBO(10
particles).differentiable_loss averaged over the test set: a negative ELBO, i.e. an upper
bound on −log p(y | x), with the recognition network q(z | x, y) that sees the missing
quadrants. The baseline figure is the masked binary cross-entropy of the network's pixel
probabilities. Ours is one unconditional VAE trained on dynamically binarized full images,
completing by posterior inference: −log p̂(x_mis | x_obs) by self-normalized importance
sampling, an estimate (not a bound) that is consistent as K grows; its finite-K error tends
to make it optimistic (see the ESS column). Grey-level cross-entropy includes the targets'
own entropy, so the binarized and grey columns are not on the same scale."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="run folder of an MNIST model (vae-train --out)")
    p.add_argument("--auroc-points", type=int, default=1000, help="test points of each set")
    p.add_argument("--auroc-k", type=int, default=500, help="importance samples per point")
    p.add_argument("--quadrant-points", type=int, default=300, help="MNIST test points")
    p.add_argument("--quadrant-k", type=int, default=1000, help="importance samples per point")
    p.add_argument("--data-dir", default=None, help="data folder (default $VAE_LAB_DATA)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def auroc_part(model, guide, run: RunConfig, args) -> str:
    kw = {"binarize": run.binarize, "data_dir": args.data_dir, "download": False,
          "seed": run.seed}
    inside = load_dataset(run.dataset, "test", **kw)
    outside = load_dataset("fashion-mnist", "test", **kw)
    n = args.auroc_points
    # random, label-stratified subsets: data files can be ordered by class
    result = anomaly_auroc(model, guide, inside.subset(n, args.seed).x,
                           outside.subset(n, args.seed).x, num_samples=args.auroc_k)
    return (f"AUROC {run.dataset} test vs fashion-mnist test: **{result.auroc:.4f}** "
            f"(a random {n} points of each, K={args.auroc_k}, {inside.info['binarize']}); "
            f"mean −log p̂(x): "
            f"{result.scores_in.mean():.2f} in, {result.scores_out.mean():.2f} out")


def quadrant_part(model, guide, run: RunConfig, args) -> str:
    n, k = args.quadrant_points, args.quadrant_k
    binary = load_dataset(run.dataset, "test", binarize=run.binarize, data_dir=args.data_dir,
                          download=False, seed=run.seed).subset(n, args.seed).x
    grey = load_dataset(run.dataset, "test", binarize="none", data_dir=args.data_dir,
                        download=False).subset(n, args.seed).x  # the same random rows
    rows = ["| given | ours, binarized | ours, grey-level CE | median ESS | Pyro CVAE | "
            "Pyro baseline NN |", "|---|---|---|---|---|---|"]
    for q in (1, 2, 3):
        given = quadrant_mask(q)
        nll, ess = conditional_log_likelihood(model, guide, binary, given, num_samples=k,
                                              return_ess=True)
        nll_grey = conditional_log_likelihood(model, guide, grey, given, num_samples=k)
        rows.append(f"| {q} | {-nll.mean():.2f} ± {nll.std() / n**0.5:.2f} | "
                    f"{-nll_grey.mean():.2f} ± {nll_grey.std() / n**0.5:.2f} | "
                    f"{ess.median():.1f} | {PYRO['CVAE'][q]} | {PYRO['baseline NN'][q]} |")
    head = (f"−log p(missing | given quadrants), nats per image, a random {n} {run.dataset} test "
            f"images, K={k} (½ q(z|x) + ½ q(z|x̃), x̃ = missing set to 0); ± is the standard "
            f"error over images")
    return "\n".join([head, "", *rows, "", NOTE])


def main(argv=None) -> None:
    args = parse_args(argv)
    model, guide, saved = load_run(args.run)
    run = RunConfig.from_json(saved["run"])
    print(f"run {args.run}: {run.model} + {run.guide}, {saved['epoch']} epochs, "
          f"{run.dataset} ({run.binarize} binarization)")
    parts = []
    for part in (auroc_part, quadrant_part):
        pyro.set_rng_seed(args.seed)
        start = time.perf_counter()
        parts.append(part(model, guide, run, args))
        print("\n" + parts[-1])
        print(f"({part.__name__}: {time.perf_counter() - start:.0f} s)")
    write_table("variants-eval", "\n\n".join(parts),
                budget=f"the run {args.run} ({run.model} + {run.guide}, {saved['epoch']} epochs "
                       f"of {run.dataset}); AUROC on {args.auroc_points} points per set with "
                       f"K = {args.auroc_k}; quadrants on {args.quadrant_points} points with "
                       f"K = {args.quadrant_k}", seeds=f"{args.seed} (subsets and draws), "
                       f"{run.seed} (the run)")


if __name__ == "__main__":
    main()
