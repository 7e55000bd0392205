"""Every disentanglement metric on four representations whose answer is known: the true
factors, a permuted and rescaled copy, independent noise, and the standardized factors with
x and y turned by 45° (each of those codes mixes two factors).

The observations are the factor indices themselves, with the sprites' factor sizes
(3, 6, 40, 32, 32), as disentanglement_lib's tests use DummyData. Sample sizes are below
the library's defaults to keep it to minutes; ``--scale`` multiplies them.

    python benchmarks/metric_oracles.py
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from inference.disentangle.factors import GroundTruthData
from inference.disentangle.metrics import METRICS, scores

SIZES = {"beta_vae": {"num_train": 1000, "num_eval": 500},
         "factor_vae": {"num_train": 1000, "num_eval": 500, "num_variance_estimate": 2000},
         "mig": {"num_train": 3000}, "sap": {"num_train": 2000, "num_test": 1000},
         "dci": {"num_train": 1000, "num_test": 500},
         "modularity": {"num_train": 2000, "num_test": 1000}, "unsupervised": {"num_train": 3000}}
KEYS = {"beta_vae": ["eval_accuracy"], "factor_vae": ["eval_accuracy"], "mig": ["mig"],
        "sap": ["sap"], "dci": ["disentanglement", "completeness", "informativeness"],
        "modularity": ["modularity", "explicitness"],
        "unsupervised": ["gaussian_total_correlation", "mutual_info_score"]}
SIZES_OF_FACTORS = torch.tensor([3.0, 6, 40, 32, 32], dtype=torch.float64)


class Factors(GroundTruthData):
    factor_names = ("shape", "scale", "orientation", "x", "y")
    factor_sizes = (3, 6, 40, 32, 32)

    def observations(self, factors):
        return factors.double()


def representations():
    noise = torch.Generator().manual_seed(5)
    scales = torch.tensor([2.0, -0.5, 3.0, 0.7, 1.5], dtype=torch.float64)

    def rotated(x):
        z = (x - (SIZES_OF_FACTORS - 1) / 2) / torch.sqrt((SIZES_OF_FACTORS ** 2 - 1) / 12)
        a, b = z[:, 3].clone(), z[:, 4].clone()
        z[:, 3], z[:, 4] = (a - b) / math.sqrt(2), (a + b) / math.sqrt(2)
        return z

    return {"true": lambda x: x, "permuted, rescaled": lambda x: x[:, [3, 0, 4, 1, 2]] * scales,
            "noise": lambda x: torch.randn(x.shape, generator=noise, dtype=torch.float64),
            "rotated": rotated}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--dci-trees", type=int, default=100)
    args = p.parse_args()
    sizes = {m: {k: max(100, round(v * args.scale)) for k, v in s.items()}
             for m, s in SIZES.items()}
    sizes["dci"]["n_estimators"] = args.dci_trees
    reps = representations()
    print("| metric | " + " | ".join(reps) + " | sizes |")
    print("| --- | " + " | ".join("---" for _ in reps) + " | --- |")
    for name in METRICS:
        start = time.perf_counter()
        results = {r: scores(Factors(), fn, [name], seed=7, options=sizes)[name]
                   for r, fn in reps.items()}
        for key in KEYS[name]:
            cells = " | ".join(f"{results[r][key]:.3f}" for r in reps)
            print(f"| {name} {key} | {cells} | {sizes[name]} |", flush=True)
        print(f"<!-- {name}: {time.perf_counter() - start:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
