"""``vae-eval RUN --quality``: sample quality of a run folder's pair against a split of its
dataset, beside two reference rows measured the same way (docs/guide/quality.md)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pyro
import torch

from inference.checkpoint import save_json
from inference.data import TensorData
from inference.quality.classifier import reference_classifier
from inference.quality.compare import (
    QualityReference,
    class_quality,
    independent_pixels,
    model_samples,
)
from inference.validate import non_negative_int, optional, positive_int

PIXELS = {"mean": "pixel means E[x | z]", "draw": "draws x ~ p(x | z)"}
FLOOR, BASELINE = "train vs test (floor)", "independent pixels"


def quality_stem(split: str, n: int, pixels: str, limit: int | None, seed: int,
                 checkpoint: str) -> str:
    return (f"quality-{split}-N{n}-{pixels}" + (f"-random{limit}" if limit else "")
            + (f"-seed{seed}" if seed else "") + ("-last" if checkpoint == "last" else ""))


def comparison_sets(run, split: str, pixels: str, data_dir=None,
                    download: bool = True) -> tuple[TensorData, TensorData, bool]:
    """(real, train, binary): the split the samples are compared with and the training split,
    both as the comparison sees them. Pixel means, and any sample of a grey-level run, are
    compared with grey levels; draws of a binary run with the run's binarized split (its
    fixed draw, as vae-eval scores it), through a classifier trained on binary images."""
    from inference.run_outputs import run_split

    if pixels not in PIXELS:
        raise ValueError(f"pixels must be one of {', '.join(PIXELS)}, got {pixels!r}")
    if getattr(run, "data", None) is not None:
        raise ValueError(f"--quality compares samples in the feature space of a classifier of "
                         f"a named dataset; this run was trained on --data {run.data}, which "
                         f"has none: score it by likelihood (vae-eval without --quality)")
    binary_run = run.binarize != "none" or run.dataset == "binarized-mnist"
    if run.dataset == "binarized-mnist" and pixels == "mean":
        raise ValueError("binarized-mnist has no grey levels to compare pixel means with; "
                         "compare binary draws (--pixels draw)")
    binary = binary_run and pixels == "draw"
    grey = dataclasses.replace(run, binarize="none")
    real = run_split(run if binary else grey, split, data_dir, download)
    return real, run_split(grey, "train", data_dir, download), binary


def _floor_sampler(train: TensorData, binary: bool, seed: int):
    """``(c, n) -> n`` random training images (of class c, when c is not None)."""
    g = torch.Generator().manual_seed(seed)

    def draw(c, n: int) -> torch.Tensor:
        x = train.x.cpu() if c is None else train.x.cpu()[train.y.cpu() == c]
        x = x[torch.randperm(len(x), generator=g)[:n]]
        return torch.bernoulli(x, generator=g) if binary else x

    return draw


def _rows(model, ref: QualityReference, train: TensorData, n: int, mean: bool, binary: bool,
          seed: int) -> dict[str, dict]:
    pyro.set_rng_seed(seed)
    floor = _floor_sampler(train, binary, seed)
    return {"model": ref.score(model_samples(model, n, mean=mean)),
            FLOOR: ref.score(floor(None, min(n, len(train)))),
            BASELINE: ref.score(independent_pixels(train.x, n, seed=seed, binary=binary))}


def _per_class(model, real: TensorData, train: TensorData, classifier, n: int, mean: bool,
               binary: bool, seed: int) -> dict | None:
    classes = getattr(model, "num_classes", None)
    if classes is None or real.y is None:
        return None
    per = max(4, n // classes)
    pyro.set_rng_seed(seed)
    out = {"n_per_class": per, "model": class_quality(
        lambda c, m: model_samples(model, m, mean=mean, label=c), real, classifier=classifier,
        n=per)}
    out[FLOOR] = class_quality(_floor_sampler(train, binary, seed), real,
                               classifier=classifier, n=per)
    return out


def format_quality(summary: dict) -> str:
    """The table ``vae-eval --quality`` prints."""
    lines = [f"{'':24s}{'n':>6s}{'FD':>9s}{'precision':>11s}{'recall':>8s}"
             f"{'classes':>9s}{'top p':>7s}{'IS':>6s}"]
    for name, r in summary["rows"].items():
        lines.append(f"  {name:22s}{r['n']:6d}{r['frechet_distance']:9.2f}{r['precision']:11.3f}"
                     f"{r['recall']:8.3f}{r['class_entropy']:9.3f}{r['top_probability']:7.3f}"
                     f"{r['classifier_score']:6.2f}")
    per = summary.get("per_class")
    if per:
        lines.append(f"per class (samples given y = c against the {summary['split']} images of "
                     f"class c; {per['n_per_class']} samples each):")
        lines.append(f"  {'class':>5s}{'FD':>9s}{'precision':>11s}{'recall':>8s}"
                     f"{'accuracy':>10s}{'floor FD':>10s}")
        rows = zip(per["model"]["per_class"], per[FLOOR]["per_class"], strict=True)
        for r, f in rows:
            lines.append(f"  {r['class']:5d}{r['frechet_distance']:9.2f}{r['precision']:11.3f}"
                         f"{r['recall']:8.3f}{r['accuracy']:10.3f}{f['frechet_distance']:10.2f}")
        m, f = per["model"]["mean"], per[FLOOR]["mean"]
        lines.append(f"  {'mean':>5s}{m['frechet_distance']:9.2f}{m['precision']:11.3f}"
                     f"{m['recall']:8.3f}{m['accuracy']:10.3f}{f['frechet_distance']:10.2f}")
    return "\n".join(lines)


def quality_run(out: str | Path, *, split: str = "test", n: int = 10_000, pixels: str = "mean",
                limit: int | None = None, seed: int = 0, classifier_seed: int = 0,
                cache_dir=None, device: str = "auto", data_dir=None, download: bool = True,
                checkpoint: str = "best", progress: bool = True, log=print) -> dict[str, Any]:
    """Sample quality of a run folder's pair: ``n`` samples from the prior (``pixels``:
    ``"mean"`` or ``"draw"``) against the ``split`` of its dataset (a stratified random
    ``limit`` of it if given), with a train-vs-test floor and an independent-pixel baseline,
    and per-class rows for a label-conditional model. Writes ``<stem>.json`` in the run
    folder (:func:`quality_stem`) and returns the summary."""
    from inference.run_folder import load_run, provenance
    from inference.run_outputs import run_config

    positive_int("n", n)
    optional(positive_int, "limit", limit)
    non_negative_int("classifier_seed", classifier_seed)
    out = Path(out)
    model, _, saved = load_run(out, device, checkpoint=checkpoint)
    run = run_config(out, saved)
    real, train, binary = comparison_sets(run, split, pixels, data_dir, download)
    real = real if limit is None or limit >= len(real) else real.subset(limit, seed=run.seed)
    pixels_of = "grey levels" if real.info["binarize"] == "none" else real.info["binarize"]
    log(f"run {out}: {run.model} + {run.guide}, {saved['checkpoint']} (epoch {saved['epoch']});"
        f" {real.info['name']} {split}, {len(real)} images ({pixels_of})")
    classifier = reference_classifier(run.dataset, binary=binary, seed=classifier_seed,
                                      cache_dir=cache_dir, data_dir=data_dir,
                                      download=download, progress=progress, log=log)
    start = time.perf_counter()
    ref = QualityReference(classifier, real)
    log(f"samples: {n} from the prior, {PIXELS[pixels]}, seed {seed}; features: the "
        f"classifier's {ref.features.shape[1]} penultimate units; k = {ref.k}")
    mean = pixels == "mean"
    summary = {"run": str(out), "split": split, "pixels": pixels, "n": n, "k": ref.k,
               "seed": seed, **provenance(saved), "data": real.info,
               "classifier": {**classifier.info, "path": str(classifier.path)},
               "rows": _rows(model, ref, train, n, mean, binary, seed),
               "per_class": _per_class(model, real, train, classifier, n, mean, binary, seed)}
    summary["seconds"] = time.perf_counter() - start
    log(format_quality(summary))
    path = out / f"{quality_stem(split, n, pixels, limit, seed, checkpoint)}.json"
    save_json(path, summary)
    log(f"wrote {path}")
    return summary
