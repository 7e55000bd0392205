"""Samplers on a run folder: ``vae-eval RUN --quality --sampler NAME...`` and
``vae-sample RUN --sampler NAME`` (docs/guide/samplers.md)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyro
import torch

from inference.checkpoint import save_json
from inference.samplers.base import make_sampler
from inference.samplers.codes import (
    aggregate_kl,
    fitted_sampler,
    run_codes,
    sampler_folder,
)

# Options that change how a fitted sampler draws or scores, not what it fits.
DRAW_OPTIONS = ("sample_steps", "iw_samples")


class RunSamplers:
    """A run's pair, its codes of the train, valid and test splits, and its samplers, fitted
    on first use and saved in ``<run>/samplers/``. A label-conditional pair gets one sampler
    per class (fitted on that class's codes), so that z is drawn given y. The samplers fit
    on a random ``train_codes`` of the training split's codes (all: None; the subset drawn
    as ``vae-train --train-limit`` draws it)."""

    def __init__(self, out, *, codes: str = "mean", train_codes: int | None = 20_000,
                 checkpoint: str = "best",
                 device: str = "auto", data_dir=None, download: bool = True, seed: int = 0,
                 progress: bool = False, log=print):
        from inference.run_folder import load_run
        from inference.run_outputs import run_config, run_split
        from inference.validate import optional, positive_int

        optional(positive_int, "train_codes", train_codes)
        self.out, self.codes, self.seed, self.progress, self.log = (Path(out), codes, seed,
                                                                    progress, log)
        self.model, self.guide, self.saved = load_run(self.out, device, checkpoint=checkpoint)
        self.run = run_config(self.out, self.saved)
        self.classes = getattr(self.model, "num_classes", None)
        self.train_codes = train_codes
        self.z = {}
        for split in ("train", "valid", "test"):
            data = run_split(self.run, split, data_dir, download)
            if split == "train" and train_codes is not None and train_codes < len(data):
                # random and stratified; with the run's seed, a run trained on train_limit =
                # train_codes images gets the codes of exactly those images
                data = data.subset(train_codes, seed=self.run.seed)
            pyro.set_rng_seed(seed)  # a dynamically binarized split draws its pixels
            self.z[split] = run_codes(self.guide, data, codes, seed=seed)
        self.dim = self.z["train"][0].shape[1]

    def _split(self, split: str, label=None) -> torch.Tensor:
        z, _, _, y = self.z[split]
        return z if label is None else z[y == label]

    def sampler(self, name: str, options: dict | None = None) -> dict:
        """{label or None: fitted sampler}: one sampler, or one per class."""
        options = dict(options or {})
        full = make_sampler(name, **options).options  # with the defaults: they key the folder
        fit_options = {k: v for k, v in full.items() if k not in DRAW_OPTIONS}
        labels = [None] if self.classes is None else list(range(self.classes))
        out = {}
        for c in labels:
            folder = sampler_folder(self.out, name, self.codes,
                                    {**fit_options, "train_codes": self.train_codes}, c)
            out[c] = fitted_sampler(folder, name, options, self._split("train", c),
                                    self._split("valid", c),
                                    weights=self.saved["weights_sha256"], seed=self.seed,
                                    progress=self.progress, log=self.log)
        return out

    @torch.no_grad()
    def draw(self, samplers: dict, n: int, batch_size: int = 1000, label: int | None = None):
        """(images (n, D) on the CPU, labels (n,) or None): codes from the samplers (for a
        conditional pair, of class ``label``, else of classes in proportion to the training
        labels) decoded to the likelihood's mean."""
        from inference.latent import decode

        if None in samplers:
            y = None
        elif label is not None:
            y = torch.full((n,), label, dtype=torch.long)
        else:  # classes in proportion to the training labels, drawn without replacement
            train_y = self.z["train"][3]
            y = train_y[torch.randint(len(train_y), (n,))].sort().values
        images = []
        for start in range(0, n, batch_size):
            part = slice(start, min(n, start + batch_size))
            if y is None:
                z = samplers[None].sample(part.stop - part.start)
                images.append(decode(self.model, z).cpu())
                continue
            labels = y[part]
            z = torch.cat([samplers[c].sample(int((labels == c).sum()))
                           for c in labels.unique().tolist()])  # grouped as labels is sorted
            images.append(decode(self.model, z, labels).cpu())
        return torch.cat(images), y

    def held_out(self, samplers: dict, limit: int = 2000) -> float | None:
        """Mean log-density of a random ``limit`` of the test codes under the sampler (the
        class's sampler for each code), in nats; None where it has no tractable density."""
        z, _, _, y = self.z["test"]
        g = torch.Generator().manual_seed(self.seed)
        idx = torch.randperm(len(z), generator=g)[:limit]
        z, y = z[idx], None if y is None else y[idx]
        if None in samplers:
            lp = samplers[None].log_prob(z)
            return None if lp is None else lp.double().mean().item()
        parts = [samplers[c].log_prob(z[y == c]) for c in samplers]
        return None if any(p is None for p in parts) else torch.cat(parts).double().mean().item()

    def prior_hole(self) -> float:
        """KL(q(z) || N(0, I)) of the training codes
        (:func:`~inference.samplers.codes.aggregate_kl`)."""
        _, loc, scale, _ = self.z["train"]
        return aggregate_kl(loc, scale, seed=self.seed)


def sampler_rows(rs: RunSamplers, names, options: dict, ref, n: int,
                 seed: int) -> dict[str, dict[str, Any]]:
    """A quality row per sampler: FD, precision, recall, coverage of ``n`` decoded samples
    against ``ref``, the held-out log-density of the test codes, and the seconds to fit
    and to draw (codes and decoding)."""
    rows = {}
    for name in names:
        samplers = rs.sampler(name, options.get(name))
        pyro.set_rng_seed(seed)
        start = time.perf_counter()
        images, _ = rs.draw(samplers, n)
        draw_s = time.perf_counter() - start
        rows[name] = {**ref.score(images), "held_out_log_density": rs.held_out(samplers),
                      "fit_seconds": sum(s.info.get("fit_seconds", 0.0)
                                         for s in samplers.values()),
                      "draw_seconds": draw_s, "info": next(iter(samplers.values())).info}
    return rows


def format_samplers(summary: dict) -> str:
    """The table ``vae-eval --quality --sampler`` prints."""
    lines = [f"prior hole: KL(q(z) || N(0, I)) = {summary['prior_hole_kl']:.2f} nats "
             f"({summary['codes']} codes of the training split)",
             f"{'':24s}{'n':>6s}{'FD':>9s}{'precision':>11s}{'recall':>8s}{'classes':>9s}"
             f"{'log q(z)':>10s}{'fit s':>8s}{'draw s':>8s}"]
    for name, r in summary["rows"].items():
        lp = r.get("held_out_log_density")
        lines.append(f"  {name:22s}{r['n']:6d}{r['frechet_distance']:9.2f}"
                     f"{r['precision']:11.3f}{r['recall']:8.3f}{r['class_entropy']:9.3f}"
                     f"{'-' if lp is None else f'{lp:.2f}':>10s}"
                     f"{r.get('fit_seconds', 0):8.1f}{r.get('draw_seconds', 0):8.1f}")
    return "\n".join(lines)


def sampler_quality_run(out, samplers, *, options: dict | None = None, codes: str = "mean",
                        train_codes: int | None = 20_000, split: str = "test",
                        n: int = 10_000, seed: int = 0,
                        classifier_seed: int = 0, cache_dir=None, device: str = "auto",
                        data_dir=None, download: bool = True, checkpoint: str = "best",
                        progress: bool = True, log=print) -> dict[str, Any]:
    """Sample quality of each named sampler on a run folder (grey-level pixel means against
    the ``split``), beside the train-vs-test floor, with the prior-hole diagnosis. Writes
    ``samplers-<split>-N<n>-<codes>[-seedS].json`` in the run folder; returns the summary."""
    from inference.quality.classifier import reference_classifier
    from inference.quality.compare import QualityReference
    from inference.quality.run import FLOOR, _floor_sampler, comparison_sets
    from inference.run_folder import provenance

    rs = RunSamplers(out, codes=codes, train_codes=train_codes, checkpoint=checkpoint,
                     device=device, data_dir=data_dir, download=download, seed=seed,
                     progress=progress, log=log)
    real, train, _ = comparison_sets(rs.run, split, "mean", data_dir, download)
    classifier = reference_classifier(rs.run.dataset, binary=False, seed=classifier_seed,
                                      cache_dir=cache_dir, data_dir=data_dir,
                                      download=download, progress=progress, log=log)
    ref = QualityReference(classifier, real)
    log(f"run {out}: {rs.run.model} + {rs.run.guide}; {len(real)} {split} images; {n} pixel "
        f"means per sampler, seed {seed}; codes: the guide's {codes}s, z {rs.dim}")
    rows = sampler_rows(rs, samplers, options or {}, ref, n, seed)
    rows[FLOOR] = ref.score(_floor_sampler(train, False, seed)(None, min(n, len(train))))
    summary = {"run": str(out), "split": split, "n": n, "seed": seed, "codes": codes,
               **provenance(rs.saved), "prior_hole_kl": rs.prior_hole(), "rows": rows,
               "classifier": {**classifier.info, "path": str(classifier.path)}}
    log(format_samplers(summary))
    path = Path(out) / (f"samplers-{split}-N{n}-{codes}" + (f"-seed{seed}" if seed else "")
                        + ".json")
    save_json(path, summary)
    log(f"wrote {path}")
    return summary


def sampler_sample_run(out, name: str, *, options: dict | None = None, n: int = 64,
                       label: int | None = None, codes: str = "mean",
                       train_codes: int | None = 20_000, file=None,
                       seed: int = 0, device: str = "auto",
                       checkpoint: str = "best", data_dir=None, download: bool = True,
                       log=print) -> Path:
    """A grid of ``n`` images from the run's decoder fed by the named sampler (fitted on
    first use), of class ``label`` for a label-conditional pair; default file
    ``<run>/samples/n<n>-<name>[-label<L>][-seedS].png``."""
    from inference.run_outputs import check_label
    from inference.visualize import sample_grid, save_png

    rs = RunSamplers(out, codes=codes, train_codes=train_codes, checkpoint=checkpoint,
                     device=device, data_dir=data_dir, download=download, seed=seed, log=log)
    check_label(rs.model, label)
    samplers = rs.sampler(name, (options or {}).get(name))
    pyro.set_rng_seed(seed)
    images, _ = rs.draw(samplers, n, label=label)
    stem = (f"n{n}-{name}" + ("" if label is None else f"-label{label}")
            + (f"-seed{seed}" if seed else ""))
    title = f"samples, {name} sampler" + ("" if label is None else f", class {label}")
    return save_png(sample_grid(rs.model, images, title),
                    Path(file or Path(out) / "samples" / f"{stem}.png"))
