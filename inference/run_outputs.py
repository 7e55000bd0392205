"""What a finished run folder gives: scores (``vae-eval``), figures and new samples as PNG."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyro

from inference.checkpoint import save_checkpoint, save_json
from inference.config import RunConfig
from inference.datasets import load_dataset
from inference.runs import _log_figures, load_run
from inference.visualize import save_figures, save_png


def plot_run(out: str | Path, names, *, folder: str | Path | None = None, seed: int = 0,
             device: str = "auto", data_dir=None, download: bool = True, log=print) -> dict:
    """Write the named figures of a run folder (default into ``out/figures``)."""
    out = Path(out)
    model, guide, saved = load_run(out, device)
    run = RunConfig.from_json(saved["run"])
    test = load_dataset(run.dataset, "test", binarize=run.binarize, data_dir=data_dir,
                        download=download, seed=run.seed)
    done = save_figures(model, guide, test, Path(folder or out / "figures"), names,
                        records=saved["history"], seed=seed)
    _log_figures(done, log)
    return done


def sample_run(run: str | Path, *, n: int = 64, label: int | None = None,
               out: str | Path | None = None, seed: int = 0, device: str = "auto") -> Path:
    """Write a grid of ``n`` new images of a run folder (of class ``label`` if given) as a
    PNG, by default ``<run>/figures/samples[-label<L>].png``; returns its path."""
    from inference.figures import grid_figure
    from inference.generate import class_samples, sample

    run = Path(run)
    out_file = Path(out or run / "figures" / (
        "samples.png" if label is None else f"samples-label{label}.png"))
    model, _, _ = load_run(run, device)
    if label is not None:
        classes = getattr(model, "num_classes", None)
        if classes is None:
            raise ValueError(f"--label needs a label-conditional model such as conditional_mlp;"
                             f" this run's model is {type(model).__name__}")
        if not 0 <= label < classes:
            raise ValueError(f"--label must be in 0..{classes - 1}, got {label}")
    pyro.set_rng_seed(seed)
    images = (sample(model, n, mean=True, sites=("x",))["x"] if label is None
              else class_samples(model, label, n))
    title = "samples" if label is None else f"samples of class {label}"
    return save_png(grid_figure(images.cpu(), rows=max(1, round(n ** 0.5)), title=title),
                    out_file)


def evaluate_run(out: str | Path, *, split: str = "test", num_samples: int = 5000,
                 limit: int | None = None, chunk_size: int | None = None,
                 batch_size: int | None = None, seed: int = 0, device: str = "auto",
                 data_dir=None, download: bool = True, progress: bool = True,
                 fast: bool | str = "auto", log=print) -> dict[str, Any]:
    """Score a run folder's pair on a split of its dataset.

    Writes ``<stem>.json`` (the summary) and ``<stem>-points.pt`` (per-point NLL, its error
    and k̂), with ``stem = eval-<split>-K<K>`` plus ``-first<limit>`` and ``-seed<seed>``
    when set, so evaluations with other settings never overwrite each other.
    """
    from inference.scores import format_scores, score

    out = Path(out)
    model, guide, saved = load_run(out, device)
    run = RunConfig.from_json(saved["run"])
    data = load_dataset(run.dataset, split, binarize=run.binarize, data_dir=data_dir,
                        download=download, seed=run.seed)
    data = data if limit is None else data.take(limit)
    log(f"run {out}: {run.model} + {run.guide}, {saved['epoch']} epochs; "
        f"{data.info['name']} {split} ({data.info['binarize']})")
    pyro.set_rng_seed(seed)
    start = time.perf_counter()
    summary, points = score(model, guide, data, num_samples=num_samples, chunk_size=chunk_size,
                            batch_size=batch_size, progress=progress, fast=fast)
    summary.update({"run": str(out), "split": split, "seed": seed, "data": data.info,
                    "seconds": time.perf_counter() - start,
                    "device": str(next(model.parameters()).device)})
    log(format_scores(summary))
    stem = f"eval-{split}-K{num_samples}" + (f"-first{limit}" if limit else "") + (
        f"-seed{seed}" if seed else "")
    save_json(out / f"{stem}.json", summary)
    save_checkpoint(out / f"{stem}-points.pt", points)
    log(f"wrote {out / stem}.json and {stem}-points.pt")
    return summary
