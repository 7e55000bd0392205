"""Console scripts. Thin: parse flags, call the library, print.

Every error a user can fix ends the command with one line on stderr, ``<command>: error:
...``, and exit status 2; an interrupt with 130.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import textwrap
import time
from pathlib import Path

import torch

from guides import GUIDES
from inference import distributed
from inference.check import DataError, PairError
from inference.checkpoint import CheckpointError, RunInUse
from inference.cli_args import (
    DISENTANGLEMENT_METRICS,
    EVAL_MODE_NAMES,
    EVAL_MODES,
    encode_parser,
    eval_parser,
    ood_modes,
    ood_parser,
    plot_parser,
    refuse_unused,
    sample_parser,
    train_parser,
    unique,
)
from inference.config import RunConfig, read_config_file
from inference.run_outputs import encode_run, evaluate_run, plot_run, sample_run
from inference.runs import TRAIN_FIGURES, train_run
from inference.train import TrainingDiverged
from inference.validate import non_negative_int, optional, positive_int
from inference.visualize import FIGURES
from models import MODELS

# Errors a user can fix; they are printed as one line, without a traceback. OSError covers
# the operating system's faults: a full disk, a read-only folder, a path under a file.
USER_ERRORS = (DataError, PairError, CheckpointError, TrainingDiverged, FileExistsError,
               ValueError, TypeError, distributed.ReplicaFailed, RunInUse, OSError)


def _one_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return " ".join(text.split("\n"))


def _run(parser: argparse.ArgumentParser, work) -> int:
    """``work()``, with every user error as one line and exit status 2."""
    try:
        return work()
    except USER_ERRORS as e:
        parser.exit(2, f"{parser.prog}: error: {_one_line(e)}\n")
    except KeyboardInterrupt:
        parser.exit(130, f"{parser.prog}: interrupted\n")


def _busy_cores(seconds: float = 0.25) -> float | None:
    """Cores kept busy by other processes, from two readings of /proc/stat (Linux only)."""
    def read() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return sum(values), values[3] + values[4]  # all, idle + iowait

    try:
        total0, idle0 = read()
        time.sleep(seconds)
        total1, idle1 = read()
    except (OSError, ValueError, IndexError):
        return None
    cores = os.cpu_count() or 1
    return cores * (1 - (idle1 - idle0) / max(1, total1 - total0))


def default_threads() -> int:
    """The cores other processes leave free now, at least 1 (a quarter-second reading of
    /proc/stat; elsewhere the one-minute load average). Measured on 2 cores (docs:
    benchmarks/threads): idle, two threads ran the quick start's epochs about 20% faster than
    one; beside one busy process, two threads were three times slower than one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    busy = _busy_cores()
    if busy is None:
        try:
            busy = os.getloadavg()[0]
        except (AttributeError, OSError):  # no load average (Windows)
            busy = 0.0
    return max(1, min(cores, cores - int(busy + 0.5)))


def set_threads(threads: int | None) -> int:
    """torch's CPU threads: ``threads``, else :func:`default_threads`; returns the number."""
    n = optional(positive_int, "--threads", threads) or default_threads()
    torch.set_num_threads(n)
    return n


def first_sentence(doc: str | None) -> str:
    """The first sentence of a docstring, as plain text (roles and literals unmarked)."""
    text = " ".join((doc or "").strip().split("\n\n")[0].split())
    text = re.sub(r":\w+:`~?([^`]+)`", lambda m: m.group(1).rsplit(".", 1)[-1], text)
    end = re.search(r"(?<=[.!?])\s+(?=[A-Z])", text.replace("``", ""))
    text = text.replace("``", "")
    return text[:end.start()] if end else text


def registered(width: int = 100) -> str:
    """The registered models and guides, each with the first sentence of its docstring."""
    lines = []
    for kind, registry in (("models", MODELS), ("guides", GUIDES)):
        lines.append(f"{kind}:")
        for name in registry:
            lines.append(textwrap.fill(first_sentence(registry[name].__doc__), width,
                                       initial_indent=f"  {name:16s} ",
                                       subsequent_indent=" " * 19, break_on_hyphens=False))
    return "\n".join(lines)


def _config(args: argparse.Namespace) -> tuple[RunConfig, set[str]]:
    """Settings from ``--config`` and the flags (which win); the names set on purpose."""
    from inference.owndata.load import data_defaults

    base = read_config_file(args.config) if args.config else {}
    given = {k: v for k, v in vars(args).items()
             if k in RunConfig.__dataclass_fields__ and v is not None}
    settings = {**base, **given}
    return RunConfig.from_json({**settings, **data_defaults(settings)}), set(base) | set(given)


def train_main(argv: list[str] | None = None) -> int:
    """vae-train; under torchrun every rank trains and rank 0 prints (docs: guide/distributed)."""
    try:
        return _train_main(argv)
    finally:
        distributed.close()


def _train_main(argv: list[str] | None) -> int:
    parser = train_parser()
    args = parser.parse_args(argv)
    if args.list:
        return _run(parser, lambda: list_only(parser, args))
    if args.resume and args.out is None:
        parser.error("--resume needs --out, the folder of the run to continue")
    out = args.out or Path("runs") / time.strftime("%Y%m%d-%H%M%S")

    def work() -> int:
        set_threads(args.threads)
        non_negative_int("--eval-samples", args.eval_samples)
        config, explicit = _config(args)
        metrics = train_run(config, out, resume=args.resume, explicit=explicit,
                            data_dir=args.data_dir, download=not args.no_download,
                            progress=not args.quiet, tensorboard=not args.no_tensorboard,
                            mlflow=args.mlflow,
                            divergence=None if args.no_divergence_check else 1e3,
                            figures=() if args.no_figures else TRAIN_FIGURES)
        if distributed.rank() == 0:
            table = getattr(MODELS.get(config.model), "is_table", False)
            print(final_line(metrics, out, unit="row" if table else "image"))
        if args.eval_samples > 0:  # under torchrun every rank scores its share of the points
            distributed.barrier("the end of training")  # rank 0 has written best.pt
            evaluate_run(out, num_samples=args.eval_samples, device=args.device or "auto",
                         data_dir=args.data_dir, download=not args.no_download,
                         progress=not args.quiet)
        return 0

    try:
        return _run(parser, work)
    except SystemExit as e:
        if e.code == 130:
            print(f"finished epochs are saved in {out}; continue with: vae-train --out {out} "
                  f"--resume", file=sys.stderr)
        raise


def list_only(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """vae-train --list: the registry, and no other flag (it would do nothing)."""
    training = {a.dest: ("training",) for a in parser._actions if a.dest not in ("list", "help")}
    refuse_unused(parser, args, {"list"}, training, {"training": "training"}, "with --list")
    print(registered())
    return 0


def final_line(metrics: dict, out: Path, unit: str = "image") -> str:
    """The last line of vae-train: the test ELBO, and which epoch's weights scored it."""
    epochs = metrics["epochs"]
    ran = f"{epochs} epoch{'s' * (epochs != 1)}" + (" (stopped early)"
                                                     if metrics.get("stopped_early") else "")
    which = (f"the weights of epoch {metrics['best_epoch']}, best on validation of {ran}"
             if metrics.get("best_epoch") else f"the weights after {ran}")
    if "test_uniform_prior" in metrics:
        fitted = metrics["prior"]["epochs"]
        which += f", and its code prior fitted for {fitted} epoch{'s' * (fitted != 1)}"
    if metrics.get("elbo_is_bound") is False:  # grey_cross_entropy: not a density
        return (f"final test objective (an ELBO with a cross-entropy likelihood, not a bound on "
                f"log p(x)): {metrics['test_elbo']:.2f} per {unit}, with {which}; run saved "
                f"in {out}")
    return (f"final test ELBO: {metrics['test_elbo']:.2f} nats per {unit}, with {which}; run "
            f"saved in {out}")


def eval_main(argv: list[str] | None = None) -> int:
    """vae-eval; under torchrun the ranks share the points and rank 0 writes
    (docs: guide/distributed)."""
    try:
        return _eval_main(argv)
    finally:
        distributed.close()


def _eval_main(argv: list[str] | None) -> int:
    parser = eval_parser()
    args = parser.parse_args(argv)

    def work() -> int:
        mode = eval_mode(parser, args)
        set_threads(args.threads)
        if mode == "disentanglement":
            from inference.disentangle.evaluate import evaluate_disentanglement

            evaluate_disentanglement(args.run,
                                     metrics=unique(args.metrics, DISENTANGLEMENT_METRICS),
                                     seed=args.seed, scale=args.metric_scale,
                                     device=args.device or "auto", data_dir=args.data_dir,
                                     download=not args.no_download, checkpoint=args.checkpoint)
            return 0
        if mode == "samplers":
            from inference.samplers.run import sampler_quality_run

            sampler_quality_run(args.run, unique(args.sampler, ()),
                                options=sampler_options(args), codes=args.codes,
                                train_codes=args.train_codes,
                                split=args.split, n=args.quality_samples, seed=args.seed,
                                classifier_seed=args.classifier_seed,
                                cache_dir=args.classifier_cache, device=args.device or "auto",
                                data_dir=args.data_dir, download=not args.no_download,
                                checkpoint=args.checkpoint, progress=not args.quiet)
            return 0
        if mode == "quality":
            from inference.quality.run import quality_run

            quality_run(args.run, split=args.split, n=args.quality_samples, pixels=args.pixels,
                        limit=args.limit, seed=args.seed, classifier_seed=args.classifier_seed,
                        cache_dir=args.classifier_cache, device=args.device or "auto",
                        data_dir=args.data_dir, download=not args.no_download,
                        checkpoint=args.checkpoint, progress=not args.quiet)
            return 0
        evaluate_run(args.run, split=args.split, num_samples=args.num_samples, limit=args.limit,
                     chunk_size=args.chunk_size, batch_size=args.batch_size, seed=args.seed,
                     device=args.device or "auto", data_dir=args.data_dir,
                     download=not args.no_download, progress=not args.quiet,
                     fast=False if args.fast == "off" else args.fast,
                     checkpoint=args.checkpoint)
        return 0

    return _run(parser, work)


def eval_mode(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """likelihood, quality or disentanglement; a flag the mode does not use is refused."""
    if args.quality and args.disentanglement:
        raise ValueError("--quality and --disentanglement are two evaluations: run vae-eval "
                         "once for each")
    mode = ("samplers" if args.quality and args.sampler else "quality" if args.quality
            else "disentanglement" if args.disentanglement else "likelihood")
    context = {"likelihood": "without --quality or --disentanglement"}.get(
        mode, f"with {EVAL_MODE_NAMES[mode]}")
    refuse_unused(parser, args, {mode}, EVAL_MODES, EVAL_MODE_NAMES, context)
    return mode


# vae-sample's flags that only sampling from the prior, or only --sampler, uses
SAMPLE_MODES = {"temperature": ("prior",), "codes": ("sampler",), "sampler_epochs": ("sampler",),
                "gmm_components": ("sampler",), "diffusion_steps": ("sampler",),
                "train_codes": ("sampler",),
                "data_dir": ("sampler",), "no_download": ("sampler",)}


def sampler_options(args: argparse.Namespace) -> dict[str, dict]:
    """The samplers' budget flags as options per sampler name."""
    out: dict[str, dict] = {"diffusion": {"sample_steps": args.diffusion_steps}}
    if args.sampler_epochs is not None:
        for name in ("flow", "two-stage", "diffusion"):
            out.setdefault(name, {})["epochs"] = args.sampler_epochs
    if args.gmm_components:
        out["gmm"] = {"components": tuple(args.gmm_components)}
    return out


def plot_main(argv: list[str] | None = None) -> int:
    parser = plot_parser()
    args = parser.parse_args(argv)
    names = unique(args.figures, ["all"])
    names = list(FIGURES) if "all" in names else names

    def work() -> int:
        set_threads(args.threads)
        plot_run(args.run, names, folder=args.out, seed=args.seed, device=args.device or "auto",
                 data_dir=args.data_dir, download=not args.no_download, label=args.label,
                 checkpoint=args.checkpoint)
        return 0

    return _run(parser, work)


def sample_main(argv: list[str] | None = None) -> int:
    parser = sample_parser()
    args = parser.parse_args(argv)

    def work() -> int:
        refuse_unused(parser, args, {"sampler" if args.sampler else "prior"}, SAMPLE_MODES,
                      {"sampler": "--sampler", "prior": "sampling from the prior"},
                      "with --sampler" if args.sampler else "without --sampler")
        set_threads(args.threads)
        if args.sampler:
            from inference.samplers.run import sampler_sample_run

            path = sampler_sample_run(args.run, args.sampler, options=sampler_options(args),
                                      n=args.n, label=args.label, codes=args.codes,
                                      train_codes=args.train_codes,
                                      file=args.out, seed=args.seed,
                                      device=args.device or "auto", checkpoint=args.checkpoint,
                                      data_dir=args.data_dir, download=not args.no_download)
            print(f"wrote {path}")
            return 0
        path = sample_run(args.run, n=args.n, label=args.label, out=args.out, seed=args.seed,
                          device=args.device or "auto", temperature=args.temperature,
                          checkpoint=args.checkpoint)
        print(f"wrote {path}")
        return 0

    return _run(parser, work)


def encode_main(argv: list[str] | None = None) -> int:
    parser = encode_parser()
    args = parser.parse_args(argv)

    def work() -> int:
        set_threads(args.threads)
        path = encode_run(args.run, split=args.split, file=args.out,
                          device=args.device or "auto", data_dir=args.data_dir,
                          download=not args.no_download, checkpoint=args.checkpoint)
        print(f"wrote {path}")
        return 0

    return _run(parser, work)


def ood_main(argv: list[str] | None = None) -> int:
    from inference.anomaly import SCORES
    from inference.anomaly.detect import ScoreOptions
    from inference.anomaly.run import DEFAULT_SCORES, ood_run

    parser = ood_parser()
    args = parser.parse_args(argv)

    def work() -> int:
        scores = unique(args.score, DEFAULT_SCORES)
        refuse_unused(parser, args, scores, ood_modes(),
                      {name: f"--score {name}" for name in SCORES},
                      f"with --score {' '.join(scores)}")
        set_threads(args.threads)
        options = ScoreOptions(
            num_samples=args.num_samples, steps=args.steps, lr=args.lr,
            particles=args.particles, eval_particles=args.eval_particles,
            compressor=args.compressor, typicality_batch=args.typicality_batch, seed=args.seed)
        ood_run(args.run, unique(args.against, ()), scores=scores, limit=args.limit,
                options=options, checkpoint=args.checkpoint, device=args.device or "auto",
                data_dir=args.data_dir, download=not args.no_download,
                background_epochs=args.background_epochs, perturb=args.perturb, l2=args.l2,
                bootstrap_rounds=args.bootstrap)
        return 0

    return _run(parser, work)


if __name__ == "__main__":
    sys.exit(train_main())
