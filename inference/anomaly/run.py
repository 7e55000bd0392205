"""``vae-ood``: a run folder's pair against other data sets, every score, saved.

The in-distribution set is a random subset of the run's test split, binarized as the run's
test set. Each ``--against`` set is put in the same pixel space: a data set's test split
(binarized by one Bernoulli draw, seeded by the run's seed + 1, when the in-set is binary;
grey levels otherwise), or

* ``noise``: every pixel uniform in [0, 1] (then one Bernoulli draw each, for binary data);
* ``constant``: every pixel of an image the same value c ~ U(0, 1) (for binary data the
  whole image is one Bernoulli(c) draw: all black or all white).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyro
import torch

from inference.anomaly.complexity import is_bilevel
from inference.anomaly.detect import ScoreOptions, compare
from inference.anomaly.ratio import train_background
from inference.anomaly.report import format_table, ood_histogram_figure, summary
from inference.checkpoint import load_checkpoint, save_checkpoint, save_json
from inference.data import TensorData
from inference.datasets import DATASETS, load_dataset
from inference.run_folder import load_run, provenance
from inference.run_outputs import run_config, run_split
from inference.validate import non_negative_float, positive_int

SYNTHETIC = ("noise", "constant")
AGAINST = (*DATASETS, *SYNTHETIC)
DEFAULT_SCORES = ("nll", "regret", "complexity", "typicality")  # ratio trains a model


def synthetic_set(name: str, n: int, d: int, *, binary: bool, seed: int,
                  image_shape=None) -> TensorData:
    """``noise`` or ``constant`` images (module docstring), (n, d), seeded."""
    g = torch.Generator().manual_seed(seed)
    if name == "noise":
        x = torch.rand(n, d, generator=g)
        x = torch.bernoulli(x, generator=g) if binary else x
    elif name == "constant":
        c = torch.rand(n, 1, generator=g)
        x = (torch.bernoulli(c, generator=g) if binary else c).expand(n, d).clone()
    else:
        raise ValueError(f"unknown synthetic set {name!r}; choose {' or '.join(SYNTHETIC)}")
    info = {"name": name, "split": "synthetic", "n": n, "seed": seed,
            "binarize": "one Bernoulli draw" if binary else "none"}
    return TensorData(x, image_shape=image_shape, info=info)


def against_set(name: str, inside: TensorData, n: int, *, seed: int, data_dir=None,
                download: bool = True) -> TensorData:
    """The out-of-distribution set ``name`` in the in-set's pixel space (module docstring)."""
    if name not in AGAINST:
        raise ValueError(f"unknown set to test against {name!r}; choose from "
                         f"{', '.join(AGAINST)}")
    binary, d = is_bilevel(inside.x), inside.x.shape[1]
    if name in SYNTHETIC:
        return synthetic_set(name, n, d, binary=binary, seed=seed + 1,
                             image_shape=inside.image_shape)
    data = load_dataset(name, "test", binarize="static" if binary else "none",
                        data_dir=data_dir, download=download, seed=seed + 1)
    if data.x.shape[1] != d:
        raise ValueError(f"{name} has {data.x.shape[1]} values per image but the run's data "
                         f"has {d}; test against data of the same shape")
    return data.subset(min(n, len(data)), seed=seed)


def background_pair(out: Path, saved: dict, *, epochs: int | None, rate: float, l2: float,
                    device, data_dir=None, download: bool = True, log=print):
    """The run's background pair for the ratio score, trained once into
    ``<run>/background-p<rate>-l2<l2>/`` (resumed if interrupted) and reused."""
    from inference.runs import build_pair, load_data

    non_negative_float("l2", l2)
    config = run_config(out, saved)
    epochs = positive_int("background epochs", epochs or config.epochs)
    folder = out / f"background-p{rate:g}-l2{l2:g}"
    ckpt = folder / "checkpoint.pt"
    done = load_checkpoint(ckpt)["epoch"] if ckpt.exists() else 0
    if done < epochs:
        train = load_data(config, data_dir, download)["train"]
        model, guide = build_pair(config, train)
        log(f"training the background pair ({epochs} epochs, {rate:g} of the pixels "
            f"perturbed, L2 {l2:g}) into {folder}")
        train_background(model, guide, train, rate=rate, l2=l2, epochs=epochs,
                         batch_size=config.batch_size, lr=config.lr, seed=config.seed,
                         device=device, checkpoint=ckpt, resume=ckpt.exists(),
                         progress=False)
    model, guide, _ = load_run(folder, device, checkpoint="last")
    return model, guide


def ood_run(run: str | Path, against, *, scores=DEFAULT_SCORES, limit: int = 1000,
            options: ScoreOptions | None = None, checkpoint: str = "best",
            device: str = "auto", data_dir=None, download: bool = True,
            background_epochs: int | None = None, perturb: float = 0.2, l2: float = 1e-4,
            bootstrap_rounds: int = 200, log=print) -> dict[str, Any]:
    """Score a run folder's pair on ``limit`` random test examples and as many of each set
    in ``against``; print the table, write ``<run>/ood-<sets>.json`` (metrics, costs,
    summaries), ``ood-<sets>-scores.pt`` (every score) and ``figures/ood-<sets>.png``."""
    positive_int("limit", limit)
    options = options or ScoreOptions()
    out = Path(run)
    against = list(dict.fromkeys(against))
    model, guide, saved = load_run(out, device, checkpoint=checkpoint)
    config = run_config(out, saved)
    test = run_split(config, "test", data_dir, download)
    inside = test.subset(min(limit, len(test)), seed=options.seed)
    outside = {name: against_set(name, inside, limit, seed=config.seed, data_dir=data_dir,
                                 download=download) for name in against}
    reference = None
    if "typicality" in scores:
        held = run_split(config, "valid" if config.dataset == "binarized-mnist" or
                         config.valid != 0 else "train", data_dir, download)
        reference = held.subset(min(limit, len(held)), seed=options.seed)
    background = (background_pair(out, saved, epochs=background_epochs, rate=perturb, l2=l2,
                                  device=device, data_dir=data_dir, download=download, log=log)
                  if "ratio" in scores else None)
    log(f"run {out}: {config.model} + {config.guide}, {saved['checkpoint']} (epoch "
        f"{saved['epoch']}); in: {config.dataset} test, {inside.info['rows']}")
    pyro.set_rng_seed(options.seed)
    result = compare(model, guide, inside, outside, scores=scores, options=options,
                     background=background, reference=reference,
                     bootstrap_rounds=bootstrap_rounds)
    log(format_table(result["metrics"], result["seconds_per_1000"]))
    stem = "ood-" + "+".join(against)
    report = {"run": str(out), **provenance(saved),
              "in": inside.info, "against": {n: d.info for n, d in outside.items()},
              **{k: result[k] for k in ("metrics", "seconds_per_1000", "entropy", "options")},
              "bootstrap_rounds": bootstrap_rounds, "summary": summary(result["scores"]),
              "background": None if background is None else {"perturb": perturb, "l2": l2}}
    save_json(out / f"{stem}.json", report)
    save_checkpoint(out / f"{stem}-scores.pt", {"scores": result["scores"]})
    from inference.visualize import save_png

    figure = save_png(ood_histogram_figure(result["scores"], result["metrics"],
                                           in_name=config.dataset),
                      out / "figures" / f"{stem}.png")
    log(f"wrote {out / stem}.json, {stem}-scores.pt and {figure}")
    return report


__all__ = ["AGAINST", "DEFAULT_SCORES", "against_set", "background_pair", "ood_run",
           "synthetic_set"]
