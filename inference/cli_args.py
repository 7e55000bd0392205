"""The flags of the console scripts (``vae-train``, ``vae-eval``, ``vae-plot``,
``vae-sample``, ``vae-encode``, ``vae-ood``; ``vae-impute``'s are in
:mod:`inference.owndata.impute_cli`), and which flags each mode of a command uses.

Every flag's help states its default and its choices. A flag that a mode does not use is
refused in one line (:func:`refuse_unused`), never silently ignored. Lists are given either
way, spaces or commas: ``--score nll complexity`` or ``--score nll,complexity``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from inference.config import LOSSES
from inference.datasets import BINARIZE, DATASETS, ENV_VAR
from inference.run_folder import CHECKPOINTS
from inference.runs import TRAIN_FIGURES
from inference.visualize import FIGURES
from models.nets import ACTIVATIONS

SPLITS = ("train", "valid", "test")
# vae-eval --disentanglement --metrics: the names of inference.disentangle.metrics.METRICS
# (kept here so that parsing the flags does not import scikit-learn; a test compares them)
DISENTANGLEMENT_METRICS = ("beta_vae", "factor_vae", "mig", "sap", "dci", "modularity",
                           "unsupervised")
# vae-eval's flags that only some of its modes use (the others work in every mode)
EVAL_MODES: dict[str, tuple[str, ...]] = {
    "split": ("likelihood", "quality", "samplers"), "limit": ("likelihood", "quality"),
    "num_samples": ("likelihood",), "chunk_size": ("likelihood",),
    "batch_size": ("likelihood",), "fast": ("likelihood",),
    "metrics": ("disentanglement",), "metric_scale": ("disentanglement",),
    "quality_samples": ("quality", "samplers"), "pixels": ("quality",),
    "classifier_seed": ("quality", "samplers"),
    "classifier_cache": ("quality", "samplers"), "sampler": ("quality", "samplers"),
    "codes": ("samplers",), "sampler_epochs": ("samplers",), "gmm_components": ("samplers",),
    "diffusion_steps": ("samplers",), "train_codes": ("samplers",),
}
# the samplers of inference/samplers (kept here so that parsing does not import them)
SAMPLER_NAMES = ("normal", "gmm", "flow", "two-stage", "diffusion")
EVAL_MODE_NAMES = {"likelihood": "the likelihood (vae-eval without --quality or "
                                 "--disentanglement)",
                   "quality": "--quality", "disentanglement": "--disentanglement",
                   "samplers": "--quality --sampler"}


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (with where to look), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def names_list(choices: Sequence[str], what: str):
    """An argparse type for a list given with commas (``a,b``), spaces (``a b``, with
    ``nargs="+"`` and ``action="extend"``) or both; each name one of ``choices``."""
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        bad = [n for n in names if n not in choices]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"unknown {what} {(bad or [text])[0]!r}; choose "
                                             f"from {', '.join(choices)}")
        return names
    return parse


def unique(groups: Iterable[Iterable[str]] | None, default: Sequence[str]) -> list[str]:
    """The names of a list flag (``names_list`` groups, one per word), without repeats, in
    order; ``default`` when none was given."""
    names = [name for group in groups or () for name in group]
    return list(dict.fromkeys(names)) if names else list(default)


def refuse_unused(parser: argparse.ArgumentParser, args: argparse.Namespace,
                  modes: Iterable[str], uses: Mapping[str, Sequence[str]],
                  names: Mapping[str, str], context: str) -> None:
    """Raise one line for the first flag set away from its default that none of ``modes``
    uses. ``uses``: flag (its dest) -> the modes that use it (flags not named there work in
    every mode); ``names``: how to say each mode; ``context``: how to say the modes run."""
    modes = set(modes)
    for action in parser._actions:
        allowed = uses.get(action.dest)
        if allowed is None or modes & set(allowed) or not action.option_strings:
            continue
        if getattr(args, action.dest) != action.default:
            flag = max(action.option_strings, key=len)
            where = " or ".join(names.get(m, m) for m in allowed)
            raise ValueError(f"{flag} does nothing {context}: it is for {where}; drop it")


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
    a("--device", default=None,
      help="auto (default: CUDA when available, else the CPU), cpu, cuda or cuda:N")
    a("--threads", type=int,
      help="CPU threads for torch (default: the cores other processes leave free, read from "
           "the processor's use for a quarter of a second at start, at least 1: beside a busy "
           "process one thread is often several times faster than two)")
    if data:
        a("--data-dir", type=Path, help=f"data folder (default ${ENV_VAR}, else "
                                        f"~/.cache/pyro-vae-lab)")
        a("--no-download", action="store_true", help="never download; fail if data is missing")


def _checkpoint(a) -> None:
    a("--checkpoint", choices=CHECKPOINTS, default="best",
      help="best (default: best.pt, the epoch chosen on validation, where the run has one) "
           "or last (checkpoint.pt)")


def _split(a, what: str = "split of the run's dataset") -> None:
    a("--split", choices=SPLITS, default="test",
      help=f"{what}: train, valid or test (default test)")


def train_parser() -> argparse.ArgumentParser:
    p = Parser(prog="vae-train", description="Train a model/guide pair by SVI.")
    a = p.add_argument
    a("--config", type=Path, help="settings from a JSON or TOML file (a run's config.json "
                                  "replays it); flags override them (default: none)")
    a("--list", action="store_true", help="list the registered models and guides, and exit")
    a("--model", help="generative model (default bernoulli_mlp; with --data: conv_rgb for "
                      "images, gaussian_mlp for vectors, tabular for a table; --list shows "
                      "them)")
    a("--guide", help="encoder (default gaussian_mlp; with --data: as --model; --list shows "
                      "them)")
    a("--z-dim", type=int, help="latent size, for model and guide (default: the classes' "
                                "own, 50 for the MLPs)")
    a("--hidden", type=_widths, help="hidden widths, e.g. 400,400, for model and guide "
                                     "(default: the classes' own)")
    a("--activation", choices=list(ACTIVATIONS),
      help=f"hidden activation, for model and guide: {', '.join(ACTIVATIONS)} (default: the "
           f"classes' own)")
    a("--model-config", type=_json_dict, help="other model arguments as JSON (default: none)")
    a("--guide-config", type=_json_dict, help="other guide arguments as JSON (default: none)")
    a("--dataset", choices=DATASETS, help=f"{', '.join(DATASETS)} (default: embedded, a "
                                          f"10,000-image MNIST subset in the package)")
    a("--data", help="your own data instead of --dataset: a folder of images (class "
                     "subfolders give labels), a .npy/.npz/.pt array file (x, and y if present) "
                     "or a .csv/.parquet table (default: none)")
    a("--image-size", type=int, help="--data images: resize the shorter side to N pixels and "
                                     "centre-crop N x N (default: as stored, all one size)")
    a("--channels", choices=("auto", "grey", "rgb"),
      help="--data images: auto (default: grey when every image is stored grey, else rgb), "
           "grey or rgb")
    a("--test", type=int, help="--data: rows held out at random (stratified by label) for the "
                               "test split (default: 10%% of the rows)")
    a("--schema", help="--data table: a file of column types (default: inferred)")
    a("--binarize", choices=BINARIZE,
      help="grey-level datasets' pixels: dynamic (default: a fresh Bernoulli draw per "
           "minibatch; none with --data), static (one draw) or none (grey levels)")
    a("--valid", type=int, help="training images held out for validation (default: the last "
                                "10,000 of MNIST and Fashion-MNIST, 1,000 of embedded, 5,000 of "
                                "the sprites, 10%% of --data at random; binarized-mnist has its "
                                "own; 0: none)")
    a("--train-limit", type=int, help="train on a random subset of N images (default: all)")
    a("--loss", choices=list(LOSSES),
      help="objective: trace (default), meanfield, tracegraph, iwae, dreg, stl, m2, vq; "
           "disentangling: betatc (β-TCVAE, β from --beta), dip1, dip2, capacity")
    a("--loss-config", type=_json_dict, help="the objective's other options as JSON: betatc "
      "(alpha, gamma, estimator: mss or mws), dip1/dip2 (lambda_od, lambda_d), capacity "
      "(capacity, gamma, epochs), vq (beta, restart_below: null for no dead-code restarts) "
      "(default: none)")
    a("--num-particles", type=int, help="samples of z per data point in the objective "
                                        "(default 1)")
    a("--fast", choices=("auto", "compile", "off"),
      help="fast path: auto (default; compiles on CUDA), compile (on the CPU too), off "
           "(Pyro's own objective)")
    a("--epochs", type=int, help="default 10")
    a("--patience", type=int, help="stop after N epochs without a better validation ELBO "
                                   "(default: none, train every epoch)")
    a("--batch-size", type=int, help="default 128")
    a("--lr", type=float, help="Adam learning rate (default 0.001)")
    a("--adam-eps", type=float, help="Adam epsilon (default 1e-08; the IWAE paper: 1e-4)")
    a("--adam-beta1", type=float, help="Adam β1, its first moment's decay (default 0.9; Pyro's "
                                       "ss_vae_M2 example: 0.95)")
    a("--clip-norm", type=float, help="clip the gradient's norm to this (default: none)")
    a("--schedule", choices=("constant", "iwae", "cosine"),
      help="learning rate per epoch: constant (default), iwae (3**i epochs at 10**(-i/7)) or "
           "cosine (from --lr down to nearly 0 over --epochs)")
    a("--beta", type=float, help="β-VAE: weight of the KL term in training (default 1.0)")
    a("--anneal", help="KL annealing: none (default), linear:EPOCHS or cyclical:PERIOD[:RATIO]"
                       ", rising to --beta")
    a("--labels", type=int, help="semi-supervised (--loss m2): keep N labels (balanced), hide "
                                 "the rest (default: keep all)")
    a("--labelled-every", type=int, help="--labels: a labelled batch after every N unlabelled "
                                         "ones, cycling the labels (default 1); 0: each label "
                                         "once per epoch, spread out, as Pyro's ss_vae_M2")
    a("--alpha", type=float, help="--loss m2: weight of the classification term "
                                  "(default 46.0)")
    a("--prior-epochs", type=int, help="VQ-VAE: then fit its code prior for N epochs on the "
                                       "training set's codes (needs the model's prior "
                                       "'transformer'; default 0: none)")
    a("--seed", type=int, help="default 0")
    a("--out", type=Path, help="run folder (default runs/<date>-<time>)")
    a("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    a("--eval-samples", type=int, default=0, metavar="K",
      help="after training, score the test set with K importance samples as vae-eval does "
           "(default 0: no scoring)")
    a("--no-figures", action="store_true",
      help=f"do not write {', '.join(TRAIN_FIGURES)} into <out>/figures at the end")
    a("--no-tensorboard", action="store_true", help="no TensorBoard event files in <out>")
    a("--mlflow", action="store_true", help="log to MLflow too (its MLFLOW_TRACKING_URI); "
                                            "needs pip install -e '.[mlflow]'")
    a("--no-divergence-check", action="store_true",
      help="keep training when the loss exceeds 1000 nats per data dimension or the "
           "held-out ELBO falls below its value before training")
    a("--quiet", action="store_true", help="no progress bar")
    _common(a)
    return p


def eval_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="vae-eval", description="Importance-weighted test NLL and diagnostics of a run, "
                                     "or its sample quality (--quality), or its "
                                     "disentanglement (--disentanglement).")
    a = p.add_argument
    a("run", type=Path, help="run folder written by vae-train")
    _split(a, "split scored (the likelihood) or compared with (--quality)")
    a("--num-samples", type=int, default=5000, metavar="K",
      help="importance samples per point (default 5000)")
    a("--limit", type=int, help="score a random subset of N points, seeded by the run's seed "
                                "and stratified by label where the data has labels "
                                "(binarized-mnist and the sprites have none; default: all)")
    a("--chunk-size", type=int, help="particles per chunk (default: sized to bound memory)")
    a("--batch-size", type=int, help="data points per pass (default: sized to bound memory)")
    a("--seed", type=int, default=0,
      help="seed of the importance samples, the quality's samples or the metrics' draws "
           "(default 0)")
    a("--fast", choices=("auto", "compile", "off"), default="auto",
      help="compile the chunk computation: auto (default: when it recurs 50+ times), "
           "compile, off")
    a("--quiet", action="store_true", help="no progress bar")
    a("--disentanglement", action="store_true",
      help="instead: the disentanglement metrics, the ELBO's decomposition and the test ELBO "
           "of a run on sprites or dsprites")
    a("--metrics", nargs="+", action="extend", metavar="METRIC",
      type=names_list(DISENTANGLEMENT_METRICS, "metric"),
      help=f"--disentanglement: some of {', '.join(DISENTANGLEMENT_METRICS)}, with spaces or "
           f"commas (default: all)")
    a("--metric-scale", type=float, default=1.0,
      help="--disentanglement: multiply disentanglement_lib's sample sizes (default 1.0)")
    _quality(a)
    a("--sampler", nargs="+", action="extend", metavar="NAME",
      type=names_list(SAMPLER_NAMES, "sampler"),
      help=f"--quality: draw z from latent samplers fitted on the training codes instead of "
           f"the prior, one row each: some of {', '.join(SAMPLER_NAMES)} (default: none, "
           f"the prior)")
    _sampler_budget(a)
    _checkpoint(a)
    _common(a)
    return p


def _sampler_budget(a) -> None:
    a("--codes", choices=("mean", "draw"), default="mean",
      help="--sampler: fit on the guide's means of q(z | x) (default) or one draw each")
    a("--train-codes", type=int, default=20_000,
      help="--sampler: fit on a random N of the training split's codes, drawn as vae-train "
           "--train-limit draws its images (default 20000)")
    a("--sampler-epochs", type=int,
      help="--sampler: training epochs of flow, two-stage and diffusion (default: 30, 30, 60)")
    a("--gmm-components", type=_widths, metavar="K,K",
      help="--sampler gmm: component counts tried, the best on validation codes kept "
           "(default 1,5,10,20)")
    a("--diffusion-steps", type=int, default=100,
      help="--sampler diffusion: sampling steps of the respaced schedule (default 100)")


def _quality(a) -> None:
    a("--quality", action="store_true",
      help="instead: sample quality, as Fréchet distance, precision, recall and class "
           "coverage of samples from the prior in a classifier's feature space")
    a("--quality-samples", type=int, default=10_000, metavar="N",
      help="--quality: samples drawn from the prior (default 10000)")
    a("--pixels", choices=("mean", "draw"), default="mean",
      help="--quality: a sample is the decoder's mean (default) or a draw from it")
    a("--classifier-seed", type=int, default=0,
      help="--quality: seed of the feature network (default 0)")
    a("--classifier-cache", type=Path,
      help="--quality: folder of trained classifiers (default $VAE_LAB_CLASSIFIERS, else "
           "~/.cache/pyro-vae-lab/classifiers)")


def plot_parser() -> argparse.ArgumentParser:
    p = Parser(prog="vae-plot", description="Figures of a trained run as PNG.")
    a = p.add_argument
    a("run", type=Path, help="run folder written by vae-train")
    a("figures", nargs="*", action="extend", metavar="FIGURE",
      type=names_list((*FIGURES, "all"), "figure"),
      help=f"any of {', '.join(FIGURES)}, with spaces or commas, or all (default: all)")
    a("--out", type=Path, help="folder for the PNGs (default <run>/figures)")
    a("--label", type=int, help="the class a label-conditional model decodes with (default: "
                                "the class of the image each figure starts from)")
    a("--seed", type=int, default=0, help="seed of the figures' draws (default 0)")
    _checkpoint(a)
    _common(a)
    return p


def sample_parser() -> argparse.ArgumentParser:
    p = Parser(prog="vae-sample", description="New images from a trained run.")
    a = p.add_argument
    a("run", type=Path, help="run folder written by vae-train")
    a("--label", type=int, help="class to generate (label-conditional models, e.g. "
                                "conditional_mlp; default: none, from the prior)")
    a("-n", type=int, default=64, help="images (default 64)")
    a("--temperature", type=float, default=1.0,
      help="scale of the prior's standard deviation (default 1.0; below 1: more typical)")
    a("--out", type=Path, help="PNG file (default <run>/samples/<settings>.png, named by "
                               "-n, --label, --temperature, --seed and --checkpoint)")
    a("--seed", type=int, default=0, help="seed of the draws (default 0)")
    a("--sampler", choices=SAMPLER_NAMES,
      help=f"draw z from a latent sampler fitted on the training codes (on first use; then "
           f"reused from <run>/samplers): one of {', '.join(SAMPLER_NAMES)} (default: none, "
           f"the prior)")
    _sampler_budget(a)
    _checkpoint(a)
    _common(a)
    return p


def encode_parser() -> argparse.ArgumentParser:
    p = Parser(prog="vae-encode", description="The guide's means and scales of every point.")
    a = p.add_argument
    a("run", type=Path, help="run folder written by vae-train")
    _split(a)
    a("--out", type=Path, help="file: .pt (default <run>/latents-<split>.pt) or .npz (NumPy)")
    _checkpoint(a)
    _common(a)
    return p


def ood_parser() -> argparse.ArgumentParser:
    from inference.anomaly import SCORES
    from inference.anomaly.complexity import COMPRESSORS
    from inference.anomaly.run import AGAINST, DEFAULT_SCORES

    p = Parser(
        prog="vae-ood", description="Out-of-distribution detection: a run's test set against "
                                    "other data, by several anomaly scores.")
    a = p.add_argument
    a("run", type=Path, help="run folder written by vae-train")
    a("--against", nargs="+", action="extend", required=True, metavar="SET",
      type=names_list(AGAINST, "set"),
      help=f"out-of-distribution sets, with spaces or commas: any of {', '.join(AGAINST)} "
           f"(required)")
    a("--score", nargs="+", action="extend", metavar="SCORE", type=names_list(SCORES, "score"),
      help=f"any of {', '.join(SCORES)}, with spaces or commas (default: "
           f"{', '.join(DEFAULT_SCORES)}; ratio trains a background model)")
    a("--limit", type=int, default=1000, help="random examples of each set (default 1000)")
    a("--num-samples", type=int, default=200, metavar="K",
      help="nll, complexity, ratio, typicality: importance samples for log p(x) (default 200)")
    a("--steps", type=int, default=100, help="regret: optimization steps (default 100)")
    a("--lr", type=float, default=0.05, help="regret: Adam's initial rate (default 0.05)")
    a("--particles", type=int, default=1, help="regret: draws of z per step (default 1)")
    a("--eval-particles", type=int, default=100,
      help="regret: draws of z for each of its two ELBOs (default 100)")
    a("--compressor", choices=("auto", *COMPRESSORS), default="auto",
      help=f"complexity: auto (default: tiff-g4 for binary images, png for grey levels), "
           f"{', '.join(COMPRESSORS)}")
    a("--typicality-batch", type=int, default=1, metavar="M",
      help="typicality: examples per tested batch (default 1)")
    a("--background-epochs", type=int,
      help="ratio: epochs of the background model (default: the run's)")
    a("--perturb", type=float, default=0.2, help="ratio: share of pixels replaced (default 0.2)")
    a("--l2", type=float, default=1e-4, help="ratio: L2 penalty of the background (default "
                                             "0.0001)")
    a("--bootstrap", type=int, default=200,
      help="bootstrap rounds for standard errors (default 200)")
    a("--seed", type=int, default=0, help="seed of every score's draws and subsets (default 0)")
    _checkpoint(a)
    _common(a)
    return p


def ood_modes() -> dict[str, tuple[str, ...]]:
    """vae-ood's flags that only some scores use (the others work with every score)."""
    from inference.anomaly.detect import NEEDS_NLL

    regret, ratio = ("regret",), ("ratio",)
    return {"num_samples": NEEDS_NLL, "steps": regret, "lr": regret, "particles": regret,
            "eval_particles": regret, "compressor": ("complexity",),
            "typicality_batch": ("typicality",), "background_epochs": ratio, "perturb": ratio,
            "l2": ratio}
