"""A training run as a folder: its configuration, checkpoint and metrics.

``out/config.json`` holds the :class:`RunConfig`, the resolved model and guide configs and
the data that was used; ``out/checkpoint.pt`` the state after the last finished epoch;
``out/metrics.json`` the per-epoch history and the final scores.
"""

from __future__ import annotations

import dataclasses
import inspect
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyro
import torch
from pyro.infer import ELBO, Trace_ELBO, TraceGraph_ELBO, TraceMeanField_ELBO

from guides import GUIDES, make_guide
from inference.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_json,
    save_checkpoint,
    save_json,
)
from inference.data import TensorData
from inference.datasets import load_dataset
from inference.distributed import Replicas, rank
from inference.handlers import parse_anneal
from inference.objectives import IWAE, STL, DReG, LogWeightObjective
from inference.semisupervised import SemiSupervisedData, SemiSupervisedELBO, accuracy
from inference.train import epoch_summary, fit, iwae_schedule, resolve_device
from inference.visualize import save_figures
from models import MODELS, make_model

LOSSES: dict[str, type[ELBO]] = {
    "trace": Trace_ELBO,  # one Monte Carlo sample of log p(x, z) - log q(z | x)
    "meanfield": TraceMeanField_ELBO,  # closed-form KL(q || p) where Pyro knows it
    "tracegraph": TraceGraph_ELBO,  # Rao-Blackwellized score-function terms
    "iwae": IWAE,  # importance-weighted bound with K = num_particles (Burda et al. 2016)
    "dreg": DReG,  # the same bound, doubly reparameterized guide gradient (Tucker et al. 2018)
    "stl": STL,  # the same bound, "sticking the landing" guide gradient (Roeder et al. 2017)
    "m2": SemiSupervisedELBO,  # TraceEnum_ELBO + α·classification (Kingma et al. 2014)
}
SCHEDULES = {"constant": None, "iwae": iwae_schedule}
# Figures vae-train writes into out/figures at the end of every run.
TRAIN_FIGURES = ("reconstructions", "samples", "curves")
# RunConfig fields a resumed run may change; the others must match the saved run.
RESUMABLE = ("epochs", "device")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a training run; saved as JSON beside its checkpoint."""

    model: str = "bernoulli_mlp"
    guide: str = "gaussian_mlp"
    z_dim: int | None = None  # None: the class's default
    hidden: tuple[int, ...] | None = None
    activation: str | None = None
    model_config: dict[str, Any] = field(default_factory=dict)
    guide_config: dict[str, Any] = field(default_factory=dict)
    dataset: str = "embedded"
    binarize: str = "dynamic"
    loss: str = "trace"
    num_particles: int = 1
    fast: str = "auto"  # auto, compile or off (see FastPath)
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    adam_eps: float = 1e-8
    schedule: str = "constant"  # constant, or iwae: Burda et al.'s 3**i epochs at 10**(-i/7)
    beta: float = 1.0  # weight of the latent sites' log-densities in training (β-VAE)
    anneal: str = "none"  # none, linear:EPOCHS or cyclical:PERIOD[:RATIO], rising to beta
    labels: int | None = None  # semi-supervised: keep this many labels, hide the others
    alpha: float = 46.0  # loss m2: weight of the classification term
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        for kind, name, names in (("model", self.model, MODELS), ("guide", self.guide, GUIDES),
                                  ("loss", self.loss, LOSSES),
                                  ("fast", self.fast, ("auto", "compile", "off")),
                                  ("schedule", self.schedule, SCHEDULES)):
            if name not in names:
                raise ValueError(f"unknown {kind} {name!r}; choose one of {', '.join(names)}")
        parse_anneal(self.anneal, self.beta)  # a bad spelling fails before any work

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: tuple(v) if k == "hidden" and v is not None else v
             for k, v in d.items() if k in known}
        return cls(**d)


def make_loss(config: RunConfig) -> ELBO:
    cls = LOSSES[config.loss]
    if cls is SemiSupervisedELBO:
        return cls(alpha=config.alpha, num_particles=config.num_particles)
    if issubclass(cls, LogWeightObjective):
        return cls(num_particles=config.num_particles, max_plate_nesting=1)
    return cls(num_particles=config.num_particles, vectorize_particles=config.num_particles > 1,
               max_plate_nesting=1)


def _module_config(cls: type, config: RunConfig, extra: dict, data: TensorData) -> dict:
    """Shared flags and the data's shape, for the constructor arguments ``cls`` accepts."""
    accepts = inspect.signature(cls).parameters
    shared = {"z_dim": config.z_dim, "hidden": config.hidden, "activation": config.activation,
              "x_dim": data.event_shape.numel(), "image_shape": data.image_shape}
    out = {k: v for k, v in shared.items() if v is not None and k in accepts}
    return {**out, **extra}


def build_pair(config: RunConfig, data: TensorData):
    """Model and guide of a run, sized for ``data``."""
    model_cls, guide_cls = MODELS[config.model], GUIDES[config.guide]
    model = make_model(config.model, **_module_config(model_cls, config, config.model_config, data))
    guide = make_guide(config.guide, **_module_config(guide_cls, config, config.guide_config, data))
    return model, guide


def _resumed_config(out: Path, asked: RunConfig, explicit: set[str]) -> RunConfig:
    saved = RunConfig.from_json(load_json(out / "config.json")["run"])
    for name in explicit - set(RESUMABLE):
        if getattr(asked, name) != getattr(saved, name):
            raise ValueError(f"{name} {getattr(asked, name)!r} differs from the resumed run's "
                             f"{getattr(saved, name)!r}; a resumed run keeps its configuration "
                             f"(only {' and '.join(RESUMABLE)} may change)")
    return dataclasses.replace(saved, **{k: getattr(asked, k) for k in RESUMABLE
                                         if k in explicit})


def load_data(config: RunConfig, data_dir=None, download: bool = True):
    kw = {"binarize": config.binarize, "data_dir": data_dir, "download": download,
          "seed": config.seed}
    train, test = load_dataset(config.dataset, "train", **kw), load_dataset(config.dataset,
                                                                           "test", **kw)
    if config.labels is not None:
        if train.y is None:
            raise ValueError(f"--labels needs a labelled dataset; {config.dataset} has none")
        train = SemiSupervisedData.split(train, config.labels, seed=config.seed)
    return train, test


def training_beta(config: RunConfig):
    """The β ``fit`` trains with: None (plain ELBO), a number, or an annealing schedule."""
    schedule = parse_anneal(config.anneal, end=config.beta)
    return schedule or (None if config.beta == 1.0 else config.beta)


def describe_data(train: TensorData, test: TensorData) -> str:
    i = train.info
    return (f"data: {i['name']} train {i['n']} x {'x'.join(map(str, i['shape']))} "
            f"({i['binarize']} binarization), test {test.info['n']} ({test.info['binarize']}), "
            f"from {i['folder']}")


def train_run(config: RunConfig, out: str | Path, *, resume: bool = False,
              explicit: set[str] | None = None, data_dir=None, download: bool = True,
              progress: bool = True, figures=TRAIN_FIGURES, log=print) -> dict[str, Any]:
    """Train the pair of ``config`` into the folder ``out``; returns the metrics it saves.

    With ``resume=True`` the saved configuration of ``out`` is used; ``explicit`` names the
    fields the caller set on purpose, which must agree with it (except epochs and device).
    Under torchrun every rank trains; rank 0 alone logs and writes files.
    """
    out, main = Path(out), rank() == 0
    log = log if main else _silent
    ckpt = out / "checkpoint.pt"
    if resume and (out / "config.json").exists():
        config = _resumed_config(out, config, explicit or set())
    elif ckpt.exists():
        raise FileExistsError(f"{out} already holds a run; pass --resume to continue it or "
                              f"choose another --out")
    pyro.set_rng_seed(config.seed)
    train, test = load_data(config, data_dir, download)
    log(describe_data(train, test))
    model, guide = build_pair(config, train)
    device, beta = resolve_device(config.device), training_beta(config)
    replicas = Replicas.join(device)  # torchrun's process group, None in one process
    if replicas is not None:
        device = replicas.device
        log(replicas.describe())
    log(f"pair: {config.model} + {config.guide}, loss {config.loss}, device {device}, "
        f"{config.epochs} epochs of batch {config.batch_size}, lr {config.lr}, seed {config.seed}"
        + ("" if beta is None else f", β {beta}"))
    saved = {"run": config.to_json(), "model": model.config, "guide": guide.config,
             "data": {"train": train.info, "test": test.info},
             "versions": {"torch": str(torch.__version__), "pyro": str(pyro.__version__),
                          "python": platform.python_version()}}
    if main:
        save_json(out / "config.json", saved)
    start = time.perf_counter()
    history = fit(model, guide, train, test=test, loss=make_loss(config), epochs=config.epochs,
                  batch_size=config.batch_size, lr=config.lr, device=device, seed=config.seed,
                  optimizer=lambda p: torch.optim.Adam(p, lr=config.lr, eps=config.adam_eps),
                  lr_schedule=SCHEDULES[config.schedule], beta=beta,
                  checkpoint=ckpt, resume=resume, progress=progress, config=saved,
                  fast=False if config.fast == "off" else config.fast,
                  on_epoch=None if progress else lambda r: log(epoch_summary(r)))
    log(f"fast path: {history.fast_path}")
    metrics = {"test_elbo": history.test_elbo[-1], "train_elbo": history.train_elbo[-1],
               "epochs": len(history), "seconds_this_session": time.perf_counter() - start,
               "device": str(device), "fast_path": history.fast_path, "data": saved["data"],
               "history": history.records}
    if not main:
        return metrics
    if config.loss == "m2":
        metrics["test_accuracy"] = accuracy(guide, test)
        log(f"test accuracy of q(y | x): {metrics['test_accuracy']:.4f}")
    save_json(out / "metrics.json", metrics)
    if figures:
        _log_figures(save_figures(model, guide, test, out / "figures", figures,
                                  records=history.records, seed=config.seed), log)
    return metrics


def _silent(*args, **kwargs) -> None:
    """The log of ranks other than 0."""


def _log_figures(done: dict, log) -> None:
    for name, result in done.items():
        log(f"figure {name}: {result}")


def load_run(out: str | Path, device: str | torch.device | None = "cpu"):
    """Model and guide of a run folder with its trained weights, plus its saved config
    (with the checkpoint's ``epoch`` and per-epoch ``history`` added).

    The checkpoint is read with ``weights_only=True``; the modules are rebuilt from the
    registry names and resolved configs saved in ``config.json``.
    """
    out = Path(out)
    state = load_checkpoint(out / "checkpoint.pt")
    saved = {**(state.get("config") or load_json(out / "config.json")), "epoch": state["epoch"],
             "history": state["history"]}
    try:
        model = MODELS.make(**saved["model"])
        guide = GUIDES.make(**saved["guide"])
        model.load_state_dict(state["model"])
        guide.load_state_dict(state["guide"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"{out} does not hold a loadable run: {e}") from e
    device = resolve_device(device)
    return model.to(device).eval(), guide.to(device).eval(), saved


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
