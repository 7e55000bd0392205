"""What a finished run folder gives besides scores: figures and new samples as PNG files."""

from __future__ import annotations

from pathlib import Path

import pyro

from inference.datasets import load_dataset
from inference.runs import RunConfig, _log_figures, load_run
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
