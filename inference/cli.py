"""Console scripts. Thin: parse flags, call the library, print."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from guides import GUIDES
from inference import distributed
from inference.check import DataError, PairError
from inference.checkpoint import CheckpointError
from inference.config import LOSSES, RunConfig
from inference.datasets import BINARIZE, DATASETS, ENV_VAR
from inference.run_outputs import evaluate_run, plot_run, sample_run
from inference.runs import TRAIN_FIGURES, train_run
from inference.train import TrainingDiverged
from inference.visualize import FIGURES
from models import MODELS
from models.nets import ACTIVATIONS

# Errors a user can fix; they are printed as one line, without a traceback.
USER_ERRORS = (DataError, PairError, CheckpointError, TrainingDiverged, FileExistsError,
               ValueError, TypeError, distributed.ReplicaFailed)


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


def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vae-train", description="Train a model/guide pair by SVI.")
    a = p.add_argument
    a("--model", choices=list(MODELS), help="generative model (default bernoulli_mlp)")
    a("--guide", choices=list(GUIDES), help="encoder (default gaussian_mlp)")
    a("--z-dim", type=int, help="latent size, for model and guide (class default: 50)")
    a("--hidden", type=_widths, help="hidden widths, e.g. 400,400 (model and guide)")
    a("--activation", choices=list(ACTIVATIONS), help="hidden activation (model and guide)")
    a("--model-config", type=_json_dict, help="other model arguments as JSON")
    a("--guide-config", type=_json_dict, help="other guide arguments as JSON")
    a("--dataset", choices=DATASETS, help="default: embedded (a 10,000-image MNIST subset)")
    a("--binarize", choices=BINARIZE, help="pixels: dynamic (default), static or none")
    a("--loss", choices=list(LOSSES),
      help="objective: trace (default), meanfield, tracegraph, iwae, dreg, stl, m2")
    a("--num-particles", type=int, help="samples of z per data point in the objective")
    a("--fast", choices=("auto", "compile", "off"),
      help="fast path: auto (default; compiles on CUDA), compile (on the CPU too), off "
           "(Pyro's own objective); see README")
    a("--epochs", type=int, help="default 10")
    a("--batch-size", type=int, help="default 128")
    a("--lr", type=float, help="Adam learning rate, default 1e-3")
    a("--adam-eps", type=float, help="Adam epsilon, default 1e-8 (the IWAE paper: 1e-4)")
    a("--schedule", choices=("constant", "iwae"),
      help="learning rate per epoch: constant (default) or iwae (3**i epochs at 10**(-i/7))")
    a("--beta", type=float, help="β-VAE: weight of the KL term in training (default 1)")
    a("--anneal", help="KL annealing: none (default), linear:EPOCHS or cyclical:PERIOD[:RATIO]"
                       ", rising to --beta")
    a("--labels", type=int, help="semi-supervised: keep N labels (balanced), hide the rest")
    a("--alpha", type=float, help="loss m2: weight of the classification term (default 46)")
    a("--seed", type=int, help="default 0")
    a("--device", help="auto (default: CUDA when available), cpu, cuda, cuda:1")
    a("--out", type=Path, help="run folder (default runs/<date>-<time>)")
    a("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    a("--data-dir", type=Path, help=f"data folder (default ${ENV_VAR}, else ~/.cache/...)")
    a("--no-download", action="store_true", help="never download; fail if data is missing")
    a("--eval-samples", type=int, default=0, metavar="K",
      help="after training, score the test set with K importance samples (as vae-eval)")
    a("--no-figures", action="store_true",
      help=f"do not write {', '.join(TRAIN_FIGURES)} into <out>/figures at the end")
    a("--quiet", action="store_true", help="no progress bar")
    return p


def eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vae-eval", description="Importance-weighted test NLL and diagnostics of a run.")
    a = p.add_argument
    a("run", type=Path, help="run folder written by vae-train")
    a("--split", default="test", help="split of the run's dataset (default test)")
    a("--num-samples", type=int, default=5000, metavar="K", help="importance samples per point")
    a("--limit", type=int, help="score only the first N points")
    a("--chunk-size", type=int, help="particles per chunk (default: sized to bound memory)")
    a("--batch-size", type=int, help="data points per pass (default: sized to bound memory)")
    a("--seed", type=int, default=0)
    a("--device", default="auto", help="auto (default), cpu, cuda")
    a("--fast", choices=("auto", "compile", "off"), default="auto",
      help="compile the chunk computation: auto (when it recurs 50+ times), compile, off")
    a("--data-dir", type=Path, help=f"data folder (default ${ENV_VAR})")
    a("--no-download", action="store_true", help="never download; fail if data is missing")
    a("--quiet", action="store_true", help="no progress bar")
    return p


def eval_main(argv: list[str] | None = None) -> int:
    parser = eval_parser()
    args = parser.parse_args(argv)
    try:
        evaluate_run(args.run, split=args.split, num_samples=args.num_samples, limit=args.limit,
                     chunk_size=args.chunk_size, batch_size=args.batch_size, seed=args.seed,
                     device=args.device, data_dir=args.data_dir,
                     download=not args.no_download, progress=not args.quiet,
                     fast=False if args.fast == "off" else args.fast)
    except USER_ERRORS as e:
        parser.exit(2, f"vae-eval: error: {e}\n")
    return 0


def _config(args: argparse.Namespace) -> tuple[RunConfig, set[str]]:
    given = {k: v for k, v in vars(args).items()
             if k in RunConfig.__dataclass_fields__ and v is not None}
    return RunConfig(**given), set(given)


def train_main(argv: list[str] | None = None) -> int:
    """vae-train; under torchrun every rank trains and rank 0 prints (README)."""
    try:
        return _train_main(argv)
    finally:
        distributed.close()


def _train_main(argv: list[str] | None) -> int:
    parser = train_parser()
    args = parser.parse_args(argv)
    if args.resume and args.out is None:
        parser.error("--resume needs --out, the folder of the run to continue")
    out = args.out or Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    try:
        config, explicit = _config(args)
        metrics = train_run(config, out, resume=args.resume, explicit=explicit,
                            data_dir=args.data_dir, download=not args.no_download,
                            progress=not args.quiet,
                            figures=() if args.no_figures else TRAIN_FIGURES)
    except USER_ERRORS as e:
        parser.exit(2, f"vae-train: error: {e}\n")
    except KeyboardInterrupt:
        parser.exit(130, f"vae-train: interrupted; finished epochs are saved in {out}; "
                         f"continue with: vae-train --out {out} --resume\n")
    if distributed.rank() != 0:
        return 0
    epochs = f"{metrics['epochs']} epoch{'s' * (metrics['epochs'] != 1)}"
    print(f"final test ELBO: {metrics['test_elbo']:.2f} nats per image after {epochs}; "
          f"run saved in {out}")
    if args.eval_samples > 0:
        try:
            evaluate_run(out, num_samples=args.eval_samples, device=args.device or "auto",
                         data_dir=args.data_dir, download=not args.no_download,
                         progress=not args.quiet)
        except USER_ERRORS as e:
            parser.exit(2, f"vae-train: error: {e}\n")
    return 0


def plot_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vae-plot", description="Figures of a trained run as PNG.")
    a = p.add_argument
    a("run", type=Path, help="run folder written by vae-train")
    a("figures", nargs="*", default=["all"], metavar="FIGURE",
      help=f"any of {', '.join(FIGURES)}, or all (default)")
    a("--out", type=Path, help="folder for the PNGs (default <run>/figures)")
    a("--seed", type=int, default=0)
    a("--device", default="auto", help="auto (default), cpu, cuda")
    a("--data-dir", type=Path, help=f"data folder (default ${ENV_VAR})")
    a("--no-download", action="store_true", help="never download; fail if data is missing")
    return p


def plot_main(argv: list[str] | None = None) -> int:
    parser = plot_parser()
    args = parser.parse_args(argv)
    names = list(FIGURES) if args.figures == ["all"] else args.figures
    try:
        plot_run(args.run, names, folder=args.out, seed=args.seed, device=args.device,
                 data_dir=args.data_dir, download=not args.no_download)
    except USER_ERRORS as e:
        parser.exit(2, f"vae-plot: error: {e}\n")
    return 0


def sample_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vae-sample", description="New images from a trained run.")
    a = p.add_argument
    a("run", type=Path, help="run folder written by vae-train")
    a("--label", type=int, help="class to generate (label-conditional models, e.g. "
                                "conditional_mlp); without it: from the prior")
    a("-n", type=int, default=64, help="images (default 64)")
    a("--out", type=Path, help="PNG file (default <run>/figures/samples[-label<L>].png)")
    a("--seed", type=int, default=0)
    a("--device", default="auto", help="auto (default), cpu, cuda")
    return p


def sample_main(argv: list[str] | None = None) -> int:
    parser = sample_parser()
    args = parser.parse_args(argv)
    try:
        path = sample_run(args.run, n=args.n, label=args.label, out=args.out, seed=args.seed,
                          device=args.device)
    except USER_ERRORS as e:
        parser.exit(2, f"vae-sample: error: {e}\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(train_main())
