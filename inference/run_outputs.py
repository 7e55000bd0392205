"""What a finished run folder gives: scores (``vae-eval``), figures (``vae-plot``), new
samples (``vae-sample``) and encodings (``vae-encode``)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pyro
import torch

from inference.checkpoint import CheckpointError, atomic_write, save_checkpoint, save_json
from inference.config import RunConfig
from inference.data import TensorData
from inference.datasets import DEFAULT_VALID, load_dataset
from inference.marginal import is_point_mass
from inference.programs import device_of, owner
from inference.run_folder import load_run, provenance
from inference.runs import _log_figures
from inference.validate import optional, positive_float, positive_int
from inference.visualize import save_figures, save_png


def run_config(out: Path, saved: dict) -> RunConfig:
    """The run's configuration, or one line saying why the folder has none."""
    if "run" not in saved:
        raise CheckpointError(f"{out} was not written by vae-train: it does not say which "
                              f"dataset it was trained on; score it from Python (score, "
                              f"iw_log_likelihood) or write it with save_run(..., config=...)")
    try:
        return RunConfig.from_json(saved["run"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"the configuration saved in {out} is damaged ({e})") from None


def run_split(run: RunConfig, split: str, data_dir=None, download: bool = True,
              out: Path | None = None) -> TensorData:
    """A split of the run's dataset, binarized and held out as the run's were; for a
    ``--data`` run, read again and checked against ``out/data.json``."""
    if run.data is not None:
        from inference.owndata.load import run_split as own_split

        return own_split(run, split, out)
    valid = DEFAULT_VALID.get(run.dataset, 0) if run.valid is None else run.valid
    kw = {} if run.dataset == "binarized-mnist" else {"valid": valid}
    return load_dataset(run.dataset, split, binarize=run.binarize, data_dir=data_dir,
                        download=download, seed=run.seed, **kw)


def plot_run(out: str | Path, names, *, folder: str | Path | None = None, seed: int = 0,
             device: str = "auto", data_dir=None, download: bool = True, label=None,
             checkpoint: str = "best", log=print) -> dict:
    """Write the named figures of a run folder (default into ``out/figures``)."""
    out = Path(out)
    model, guide, saved = load_run(out, device, checkpoint=checkpoint)
    check_label(model, label)
    test = run_split(run_config(out, saved), "test", data_dir, download, out)
    done = save_figures(model, guide, test, Path(folder or out / "figures"), names,
                        records=saved["history"], seed=seed, label=label)
    _log_figures(done, log)
    return done


def check_label(model, label: int | None) -> None:
    """``--label``: only for a label-conditional model, and one of its classes."""
    if label is None:
        return
    classes = getattr(owner(model), "num_classes", None)
    if classes is None:
        raise ValueError(f"--label needs a label-conditional model such as conditional_mlp; "
                         f"this run's model is {type(owner(model)).__name__}")
    if not 0 <= label < classes:
        raise ValueError(f"--label must be in 0..{classes - 1}, got {label}")


def sample_run(run: str | Path, *, n: int = 64, label: int | None = None,
               out: str | Path | None = None, seed: int = 0, device: str = "auto",
               temperature: float = 1.0, checkpoint: str = "best") -> Path:
    """Write a grid of ``n`` new images of a run folder (of class ``label`` if given) as a
    PNG, by default ``<run>/samples/<stem>.png`` named by the settings
    (:func:`sample_stem`), so that it never replaces a training figure or another setting's
    grid; returns its path. ``temperature`` scales the prior's standard deviation (below 1:
    more typical, less varied samples)."""
    from inference.generate import class_samples, sample
    from inference.handlers import temperature as tempered
    from inference.visualize import sample_grid

    positive_int("n", n)
    positive_float("temperature", temperature)
    run = Path(run)
    out_file = Path(out or run / "samples" / (
        sample_stem(n, label, temperature, seed, checkpoint) + ".png"))
    model, _, _ = load_run(run, device, checkpoint=checkpoint)
    check_label(model, label)
    pyro.set_rng_seed(seed)
    model = tempered(model, temperature)
    images = (sample(model, n, mean=True, sites=("x",))["x"] if label is None
              else class_samples(model, label, n))
    title = "samples" if label is None else f"samples of class {label}"
    title += "" if temperature == 1 else f", temperature {temperature:g}"
    return save_png(sample_grid(model, images, title), out_file)


def sample_stem(n: int, label: int | None, temperature: float, seed: int,
                checkpoint: str) -> str:
    """``n64``, plus ``-label<L>``, ``-t<T>``, ``-seed<S>`` and ``-last`` where set."""
    return (f"n{n}" + ("" if label is None else f"-label{label}")
            + ("" if temperature == 1 else f"-t{temperature:g}") + (f"-seed{seed}" if seed else "")
            + ("-last" if checkpoint == "last" else ""))


def eval_stem(split: str, num_samples: int, limit: int | None, seed: int,
              checkpoint: str) -> str:
    return (f"eval-{split}-K{num_samples}" + (f"-random{limit}" if limit else "")
            + (f"-seed{seed}" if seed else "") + ("-last" if checkpoint == "last" else ""))


def evaluate_run(out: str | Path, *, split: str = "test", num_samples: int = 5000,
                 limit: int | None = None, chunk_size: int | None = None,
                 batch_size: int | None = None, seed: int = 0, device: str = "auto",
                 data_dir=None, download: bool = True, progress: bool = True,
                 fast: bool | str = "auto", checkpoint: str = "best",
                 log=print) -> dict[str, Any]:
    """Score a run folder's pair on a split of its dataset.

    ``checkpoint="best"`` scores ``best.pt`` where the run has one (the epoch chosen on
    validation), ``"last"`` the last epoch. ``limit`` scores a random subset of that many
    points, stratified by label and seeded by the run's seed (a data file can be ordered by
    class: its first points are no sample of it). Writes ``<stem>.json`` (the summary) and
    ``<stem>-points.pt`` (per-point NLL, its error and k̂, and the rows scored), with
    ``stem = eval-<split>-K<K>`` plus ``-random<limit>``, ``-seed<seed>`` and ``-last`` when
    set, so evaluations with other settings never overwrite each other. Each batch of points
    draws from its own seed (from ``seed`` and its first point), so under torchrun the ranks
    share the points and rank 0 writes what one process would.
    """
    from inference.distributed import Replicas
    from inference.programs import resolve_device
    from inference.scores import format_scores, score

    optional(positive_int, "limit", limit)
    out = Path(out)
    replicas = Replicas.join(resolve_device(device))  # torchrun's group, None in one process
    if replicas is not None:
        device = replicas.device
        log = log if replicas.is_main else (lambda *a, **k: None)
        log(replicas.describe())
    model, guide, saved = load_run(out, device, checkpoint=checkpoint)
    run = run_config(out, saved)
    data = run_split(run, split, data_dir, download, out)
    data = data if limit is None or limit >= len(data) else data.subset(limit, seed=run.seed)
    log(f"run {out}: {run.model} + {run.guide}, {saved['checkpoint']} (epoch "
        f"{saved['epoch']}); {data.info['name']} {split} ({data.info['binarize']})"
        + ("" if limit is None else f", {data.info['rows']}"))
    point_mass = is_point_mass(guide, *data.to(device_of(model, guide)).head(2))
    if point_mass and num_samples > 1:
        log(f"the guide is a point mass: its bound is the same for any K, scored with K = 1 "
            f"(not {num_samples})")
        num_samples = 1
    start = time.perf_counter()
    summary, points = score(model, guide, data, num_samples=num_samples, chunk_size=chunk_size,
                            batch_size=batch_size, progress=progress and replicas is None,
                            fast=fast, seed=seed)
    summary.update({"run": str(out), "split": split, "seed": seed, "data": data.info,
                    **provenance(saved), "seconds": time.perf_counter() - start,
                    "device": str(next(model.parameters()).device)})
    if replicas is not None:
        summary["processes"] = replicas.world
    length = getattr(owner(model), "length", None)  # latent positions of a code grid
    summary["point_mass"] = point_mass  # its "NLL" is −ELBO, an upper bound on −log p(x)
    if getattr(owner(model), "latent", None) == "codebook":  # units of L·D code coordinates
        summary.update(code_usage(model, guide, data))  # say nothing: count the codes used
    if point_mass and length:
        summary["rate_bits_per_position"] = summary["kl"] / (length * math.log(2))
    log(format_scores(summary))
    stem = eval_stem(split, num_samples, limit, seed, checkpoint)
    if replicas is None or replicas.is_main:
        save_json(out / f"{stem}.json", summary)
        save_checkpoint(out / f"{stem}-points.pt", points)
        log(f"wrote {out / stem}.json and {stem}-points.pt")
    return summary


def code_usage(model, guide, data: TensorData) -> dict[str, int]:
    """A VQ-VAE's codes on ``data``: how many of its K codes the points use, over how many
    positions (in place of active units, which would count code coordinates)."""
    from inference.vq import encode_codes

    codes = encode_codes(guide, data.to(device_of(model, guide))).x  # (N, L)
    vq = owner(model)
    return {"codes_used": int(codes.long().unique().numel()), "num_codes": vq.num_codes,
            "code_positions": vq.length, "active_units": {}, "latent_dims": {}}


def encode_run(out: str | Path, *, split: str = "test", file: str | Path | None = None,
               device: str = "auto", data_dir=None, download: bool = True,
               checkpoint: str = "best") -> Path:
    """The guide's means and standard deviations of every point of a split, with the labels:
    ``{"loc": (N, d), "scale": (N, d), "y": (N,)}`` as ``.pt`` (or ``.npy`` arrays in a
    ``.npz`` when ``file`` ends so). Default file ``<run>/latents-<split>.pt``."""
    import io

    import numpy as np

    from inference.latent import encode_distribution

    out = Path(out)
    model, guide, saved = load_run(out, device, checkpoint=checkpoint)
    data = run_split(run_config(out, saved), split, data_dir, download, out)
    loc, scale = encode_distribution(guide, data)
    tensors = {"loc": loc.cpu(), "scale": scale.cpu(),
               **({} if data.y is None else {"y": data.y.cpu()})}
    path = Path(file or out / f"latents-{split}.pt")
    if path.suffix == ".npz":
        buffer = io.BytesIO()
        np.savez(buffer, **{k: v.numpy() for k, v in tensors.items()})
        return atomic_write(path, lambda f: f.write(buffer.getvalue()))
    return atomic_write(path, lambda f: torch.save(tensors, f))
