"""VQ-VAE against continuous VAEs at an equal training budget (issue 14).

Three tables, every number measured by the lab's own functions on run folders that this
script trains with ``inference.train_run`` (the code path of ``vae-train``):

1. Fashion-MNIST grey levels: the VQ-VAE (Gaussian decoder, EMA codebook with restarts, a
   transformer code prior) against the Gaussian-decoder MLP VAE: test reconstruction error
   and the sample-quality metrics (Fréchet distance, precision, recall in the reference
   classifier's feature space), with the train-vs-test floor.
2. Binarized MNIST: the VQ-VAE's bound log p(x | z_q) + log p(z_q) next to the Bernoulli VAE's
   importance-weighted NLL, with the code prior's share (rate over total).
3. Codebook perplexity and dead codes per epoch, with and without EMA and restarts.

    python benchmarks/vqvae.py --out runs/bench-vq              # train what is missing, score
    python benchmarks/vqvae.py --out runs/bench-vq --figures docs/figures/vqvae

Run folders that already hold ``metrics.json`` are reused, so a second call only scores.
Choose on validation, report on test: the runs keep their best validation epoch; every test
subset is a random (label-stratified) draw.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path

import torch

from inference import TensorData, iw_log_likelihood, load_run
from inference.config import RunConfig
from inference.evaluate import elbo_terms
from inference.generate import reconstruct
from inference.run_outputs import plot_run, run_split
from inference.runs import train_run

FASHION = {"dataset": "fashion-mnist", "binarize": "none", "valid": 2000}
MNIST = {"dataset": "binarized-mnist", "binarize": "static"}
VQ = {"model": "vqvae", "guide": "vqvae", "loss": "vq"}


def plan(a) -> dict[str, dict]:
    """The runs, by folder name: their RunConfig fields."""
    budget = {"train_limit": a.train_limit, "epochs": a.epochs, "seed": a.seed}
    small = {"train_limit": a.ablation_limit, "epochs": a.ablation_epochs, "seed": a.seed}
    runs = {
        "fashion-vq": {**VQ, **FASHION, **budget, "prior_epochs": a.prior_epochs,
                       "model_config": {"likelihood": "gaussian", "prior": "transformer",
                                        "init_scale": a.init_scale},
                       "guide_config": {"ema": True}},
        "fashion-vae": {"model": "gaussian_mlp", "guide": "gaussian_mlp", **FASHION, **budget,
                        "model_config": {"mean": "sigmoid", "init_scale": a.init_scale}},
        "mnist-vq": {**VQ, **MNIST, **budget, "prior_epochs": a.prior_epochs,
                     "model_config": {"prior": "transformer"}, "guide_config": {"ema": True}},
        "mnist-vae": {"model": "bernoulli_mlp", "guide": "gaussian_mlp", **MNIST, **budget},
    }
    for ema in (False, True):
        for restart in (False, True):
            runs[f"codebook-{'ema' if ema else 'grad'}-{'restart' if restart else 'none'}"] = {
                **VQ, **FASHION, **small,
                "model_config": {"likelihood": "gaussian", "init_scale": a.init_scale},
                "guide_config": {"ema": ema},
                "loss_config": {} if restart else {"restart_below": None}}
    return runs


def train_all(runs: dict, out: Path, threads_log) -> None:
    for name, fields in runs.items():
        folder = out / name
        if (folder / "metrics.json").exists():
            continue
        start = time.perf_counter()
        train_run(RunConfig(**fields), folder, progress=False, tensorboard=False,
                  log=lambda *m: None)
        threads_log(f"trained {name} in {time.perf_counter() - start:.0f} s")


def recon_error(model, guide, test: TensorData) -> float:
    """Mean squared error summed over pixels, per test image: x against the decoder's mean
    at the guide's z (its draw for a VAE, the quantized code for the VQ-VAE)."""
    with torch.no_grad():
        err = sum(((reconstruct(model, guide, x) - x) ** 2).sum().item()
                  for x, _ in test.batches(1000))
    return err / len(test)


def fashion_table(out: Path, a) -> list[dict]:
    from inference.quality import QualityReference, model_samples, reference_classifier

    test = None
    rows = []
    for name in ("fashion-vq", "fashion-vae"):
        model, guide, config = load_run(out / name)
        if test is None:
            test = run_split(RunConfig.from_json(config["run"]), "test")
            ref = QualityReference(reference_classifier("fashion-mnist"), test.x)
            sub = test.subset(a.test_points, seed=a.seed)
            train = run_split(RunConfig.from_json(config["run"]), "train")
            floor = ref.score(train.subset(a.samples, seed=a.seed).x)
            rows.append({"pair": "train vs test (floor)", "test_elbo": None, **floor})
        metrics = json.loads((out / name / "metrics.json").read_text())
        torch.manual_seed(a.seed)
        samples = model_samples(model, a.samples)  # (n, 784) pixel means
        rows.append({"pair": name, "test_elbo": metrics["test_elbo"],
                     "recon_sq_error": recon_error(model, guide, sub), **ref.score(samples)})
    return rows


def mnist_table(out: Path, a) -> list[dict]:
    rows = []
    for name in ("mnist-vq", "mnist-vae"):
        model, guide, config = load_run(out / name)
        test = run_split(RunConfig.from_json(config["run"]), "test").subset(a.test_points,
                                                                          seed=a.seed)
        with torch.no_grad():
            if name == "mnist-vq":
                terms = elbo_terms(model, guide, test)  # exact: the guide is a point mass
                rate = terms["kl"]  # −log p(z_q): the code prior's nats
                rows.append({"pair": name, "nll_or_bound": -terms["elbo"], "rate": rate,
                             "prior_share": rate / -terms["elbo"],
                             "bits_per_position": rate / (model.length * math.log(2)),
                             "uniform_rate": model.length * math.log(model.num_codes)})
            else:
                nll = -iw_log_likelihood(model, guide, test.x, num_samples=a.num_samples,
                                         seed=a.seed)  # (N,)
                terms = elbo_terms(model, guide, test)
                rows.append({"pair": name, "nll_or_bound": nll.mean().item(),
                             "nll_se": (nll.std() / math.sqrt(len(nll))).item(),
                             "rate": terms["kl"], "prior_share": terms["kl"] / nll.mean().item()})
    return rows


def codebook_table(out: Path, runs: dict) -> list[dict]:
    rows = []
    for name in runs:
        if not name.startswith("codebook-"):
            continue
        history = json.loads((out / name / "metrics.json").read_text())["history"]
        rows.append({"run": name, "perplexity": [round(r["code_perplexity"], 1) for r in history],
                     "dead": [r["codes_dead"] for r in history],
                     "test_elbo": json.loads((out / name / "metrics.json").read_text())[
                         "test_elbo"]})
    return rows


def copy_figures(out: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("fashion-vq", "fashion-vae"):
        for fig in ("reconstructions", "samples"):
            shutil.copyfile(out / name / "figures" / f"{fig}.png", folder / f"{name}-{fig}.png")
    plot_run(out / "fashion-vq", ["codebook"], folder=folder)
    (folder / "codebook.png").replace(folder / "fashion-vq-codebook.png")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/bench-vq"))
    p.add_argument("--train-limit", type=int, default=10_000)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--prior-epochs", type=int, default=6)
    p.add_argument("--ablation-limit", type=int, default=5000)
    p.add_argument("--ablation-epochs", type=int, default=6)
    p.add_argument("--init-scale", type=float, default=0.1,
                   help="Gaussian decoders' initial σ (both pairs)")
    p.add_argument("--samples", type=int, default=5000, help="samples per quality score")
    p.add_argument("--test-points", type=int, default=2000, help="random test subset")
    p.add_argument("--num-samples", type=int, default=1000, help="K of the VAE's NLL")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--train-only", action="store_true")
    p.add_argument("--figures", type=Path, help="copy the Fashion figures here")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    runs = plan(a)
    train_all(runs, a.out, print)
    if a.train_only:
        return
    tables = {"budget": vars(a) | {"out": str(a.out), "figures": str(a.figures)},
              "codebook": codebook_table(a.out, runs), "mnist": mnist_table(a.out, a),
              "fashion": fashion_table(a.out, a)}
    print(json.dumps(tables, indent=1))
    (a.out / "tables.json").write_text(json.dumps(tables, indent=1))
    if a.figures:
        copy_figures(a.out, a.figures)


if __name__ == "__main__":
    main()
