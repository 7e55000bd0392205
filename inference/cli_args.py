"""The flags of the console scripts (``vae-train``, ``vae-eval``, ``vae-plot``,
``vae-sample``, ``vae-encode``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from inference.config import LOSSES
from inference.datasets import BINARIZE, DATASETS, ENV_VAR
from inference.run_folder import CHECKPOINTS
from inference.runs import TRAIN_FIGURES
from inference.visualize import FIGURES
from models.nets import ACTIVATIONS


def _widths(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated widths like 400,400, "
                                         f"got {text!r}") from None


def _json_dict(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON: {e}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object like '{\"mean\": \"sigmoid\"}'")
    return value


def _common(a, *, data: bool = True) -> None:
    a("--device", default=None, help="auto (default: CUDA when available), cpu, cuda, cuda:1")
    a("--threads", type=int, help="CPU threads for torch (default: see README, 'Threads')")
    if data:
        a("--data-dir", type=Path, help=f"data folder (default ${ENV_VAR}, else ~/.cache/...)")
        a("--no-download", action="store_true", help="never download; fail if data is missing")


def _checkpoint(a) -> None:
    a("--checkpoint", choices=CHECKPOINTS, default="best",
      help="best (default: best.pt, the epoch chosen on validation, where the run has one) "
           "or last (checkpoint.pt)")


def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vae-train", description="Train a model/guide pair by SVI.")
    a = p.add_argument
    a("--config", type=Path, help="settings from a JSON or TOML file (a run's config.json "
                                  "replays it); flags override them")
    a("--list", action="store_true", help="list the registered models and guides, and exit")
    a("--model", help="generative model (default bernoulli_mlp; --list shows them)")
    a("--guide", help="encoder (default gaussian_mlp; --list shows them)")
    a("--z-dim", type=int, help="latent size, for model and guide (class default: 50)")
    a("--hidden", type=_widths, help="hidden widths, e.g. 400,400 (model and guide)")
    a("--activation", choices=list(ACTIVATIONS), help="hidden activation (model and guide)")
    a("--model-config", type=_json_dict, help="other model arguments as JSON")
    a("--guide-config", type=_json_dict, help="other guide arguments as JSON")
    a("--dataset", choices=DATASETS, help="default: embedded (a 10,000-image MNIST subset)")
    a("--binarize", choices=BINARIZE, help="pixels: dynamic (default), static or none")
    a("--valid", type=int, help="training images held out for validation (default: the last "
                                "10,000 of MNIST and Fashion-MNIST, 1,000 of embedded; "
                                "binarized-mnist has its own; 0: none)")
    a("--train-limit", type=int, help="train on a random subset of N images (debugging)")
    a("--loss", choices=list(LOSSES),
      help="objective: trace (default), meanfield, tracegraph, iwae, dreg, stl, m2, vq; "
           "disentangling: betatc (β-TCVAE, β from --beta), dip1, dip2, capacity")
    a("--loss-config", type=_json_dict, help="the objective's other options as JSON: betatc "
      "(alpha, gamma, estimator: mss or mws), dip1/dip2 (lambda_od, lambda_d), capacity "
      "(capacity, gamma, epochs), vq (beta, restart_below: null for no dead-code restarts)")
    a("--num-particles", type=int, help="samples of z per data point in the objective")
    a("--fast", choices=("auto", "compile", "off"),
      help="fast path: auto (default; compiles on CUDA), compile (on the CPU too), off "
           "(Pyro's own objective); see README")
    a("--epochs", type=int, help="default 10")
    a("--patience", type=int, help="stop after N epochs without a better validation ELBO")
    a("--batch-size", type=int, help="default 128")
    a("--lr", type=float, help="Adam learning rate, default 1e-3")
    a("--adam-eps", type=float, help="Adam epsilon, default 1e-8 (the IWAE paper: 1e-4)")
    a("--clip-norm", type=float, help="clip the gradient's norm to this")
    a("--schedule", choices=("constant", "iwae"),
      help="learning rate per epoch: constant (default) or iwae (3**i epochs at 10**(-i/7))")
    a("--beta", type=float, help="β-VAE: weight of the KL term in training (default 1)")
    a("--anneal", help="KL annealing: none (default), linear:EPOCHS or cyclical:PERIOD[:RATIO]"
                       ", rising to --beta")
    a("--labels", type=int, help="semi-supervised: keep N labels (balanced), hide the rest")
    a("--alpha", type=float, help="loss m2: weight of the classification term (default 46)")
    a("--prior-epochs", type=int, help="VQ-VAE: then fit its code prior for N epochs on the "
                                       "training set's codes (needs the model's "
                                       "prior 'transformer')")
    a("--seed", type=int, help="default 0")
    a("--out", type=Path, help="run folder (default runs/<date>-<time>)")
    a("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    a("--eval-samples", type=int, default=0, metavar="K",
      help="after training, score the test set with K importance samples (as vae-eval)")
    a("--no-figures", action="store_true",
      help=f"do not write {', '.join(TRAIN_FIGURES)} into <out>/figures at the end")
    a("--no-tensorboard", action="store_true", help="no TensorBoard event files in <out>")
    a("--mlflow", action="store_true", help="log to MLflow too (its MLFLOW_TRACKING_URI); "
                                            "needs pip install -e '.[mlflow]'")
    a("--no-divergence-check", action="store_true",
      help="keep training when the loss exceeds 1000 nats per data dimension or the "
           "validation ELBO falls below its value before training (README, 'Training')")
    a("--quiet", action="store_true", help="no progress bar")
    _common(a)
    return p


def eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vae-eval", description="Importance-weighted test NLL and diagnostics of a run, "
                                    "or its sample quality (--quality).")
    a = p.add_argument
    a("run", type=Path, help="run folder written by vae-train")
    a("--split", default="test", help="split of the run's dataset (default test)")
    a("--num-samples", type=int, default=5000, metavar="K", help="importance samples per point")
    a("--limit", type=int, help="score a random subset of N points (stratified by label)")
    a("--chunk-size", type=int, help="particles per chunk (default: sized to bound memory)")
    a("--batch-size", type=int, help="data points per pass (default: sized to bound memory)")
    a("--seed", type=int, default=0)
    a("--fast", choices=("auto", "compile", "off"), default="auto",
      help="compile the chunk computation: auto (when it recurs 50+ times), compile, off")
    a("--quiet", action="store_true", help="no progress bar")
    a("--disentanglement", action="store_true",
      help="instead: the disentanglement metrics, the ELBO's decomposition and the test ELBO "
           "of a run on sprites or dsprites (README, 'Disentanglement')")
    a("--metrics", type=lambda t: tuple(m for m in t.split(",") if m),
      help="with --disentanglement: some of beta_vae, factor_vae, mig, sap, dci, modularity, "
           "unsupervised (default all)")
    a("--metric-scale", type=float, default=1.0,
      help="with --disentanglement: multiply disentanglement_lib's sample sizes (default 1)")
    _quality(a)
    _checkpoint(a)
    _common(a)
    return p


def _quality(a) -> None:
    a("--quality", action="store_true",
      help="sample quality instead of the likelihood: Fréchet distance, precision, recall and "
           "class coverage of samples from the prior in a classifier's feature space")
    a("--quality-samples", type=int, default=10_000, metavar="N",
      help="--quality: samples drawn from the prior (default 10000)")
    a("--pixels", choices=("mean", "draw"), default="mean",
      help="--quality: a sample is the decoder's mean (default) or a draw from it")
    a("--classifier-seed", type=int, default=0, help="--quality: seed of the feature network")
    a("--classifier-cache", type=Path,
      help="--quality: folder of trained classifiers (default $VAE_LAB_CLASSIFIERS, else "
           "~/.cache/pyro-vae-lab/classifiers)")


def plot_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vae-plot", description="Figures of a trained run as PNG.")
    a = p.add_argument
    a("run", type=Path, help="run folder written by vae-train")
    a("figures", nargs="*", default=["all"], metavar="FIGURE",
      help=f"any of {', '.join(FIGURES)}, or all (default)")
    a("--out", type=Path, help="folder for the PNGs (default <run>/figures)")
    a("--label", type=int, help="the class a label-conditional model decodes with (default: "
                                "the class of the image each figure starts from)")
    a("--seed", type=int, default=0)
    _checkpoint(a)
    _common(a)
    return p


def sample_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vae-sample", description="New images from a trained run.")
    a = p.add_argument
    a("run", type=Path, help="run folder written by vae-train")
    a("--label", type=int, help="class to generate (label-conditional models, e.g. "
                                "conditional_mlp); without it: from the prior")
    a("-n", type=int, default=64, help="images (default 64)")
    a("--temperature", type=float, default=1.0,
      help="scale of the prior's standard deviation (default 1; below 1: more typical)")
    a("--out", type=Path, help="PNG file (default <run>/figures/samples[-label<L>].png)")
    a("--seed", type=int, default=0)
    _checkpoint(a)
    _common(a, data=False)
    return p


def encode_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vae-encode",
                                description="The guide's means and scales of every point.")
    a = p.add_argument
    a("run", type=Path, help="run folder written by vae-train")
    a("--split", default="test", help="split of the run's dataset (default test)")
    a("--out", type=Path, help="file: .pt (default <run>/latents-<split>.pt) or .npz (NumPy)")
    _checkpoint(a)
    _common(a)
    return p


def ood_parser() -> argparse.ArgumentParser:
    from inference.anomaly import SCORES
    from inference.anomaly.complexity import COMPRESSORS
    from inference.anomaly.run import AGAINST, DEFAULT_SCORES

    p = argparse.ArgumentParser(
        prog="vae-ood", description="Out-of-distribution detection: a run's test set against "
                                    "other data, by several anomaly scores (README).")
    a = p.add_argument
    a("run", type=Path, help="run folder written by vae-train")
    a("--against", nargs="+", required=True, choices=AGAINST, metavar="SET",
      help=f"out-of-distribution sets: any of {', '.join(AGAINST)}")
    a("--score", nargs="+", choices=SCORES, default=list(DEFAULT_SCORES), metavar="SCORE",
      help=f"any of {', '.join(SCORES)} (default: all but ratio, which trains a background "
           f"model)")
    a("--limit", type=int, default=1000, help="random examples of each set (default 1000)")
    a("--num-samples", type=int, default=200, metavar="K",
      help="importance samples for log p(x) (default 200)")
    a("--steps", type=int, default=100, help="regret: optimization steps (default 100)")
    a("--lr", type=float, default=0.05, help="regret: Adam's initial rate (default 0.05)")
    a("--particles", type=int, default=1, help="regret: draws of z per step (default 1)")
    a("--eval-particles", type=int, default=100,
      help="regret: draws of z for each of its two ELBOs (default 100)")
    a("--compressor", choices=("auto", *COMPRESSORS), default="auto",
      help="complexity: auto (default: tiff-g4 for binary images, png for grey levels)")
    a("--typicality-batch", type=int, default=1, metavar="M",
      help="typicality: examples per tested batch (default 1)")
    a("--background-epochs", type=int,
      help="ratio: epochs of the background model (default: the run's)")
    a("--perturb", type=float, default=0.2, help="ratio: share of pixels replaced (default 0.2)")
    a("--l2", type=float, default=1e-4, help="ratio: L2 penalty of the background (default 1e-4)")
    a("--bootstrap", type=int, default=200, help="bootstrap rounds for standard errors")
    a("--seed", type=int, default=0)
    _checkpoint(a)
    _common(a)
    return p
