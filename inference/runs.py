"""A training run as a folder: its configuration, checkpoint and metrics.

``out/config.json`` holds the :class:`~inference.config.RunConfig`, the resolved model and
guide configs and the data that was used; ``out/checkpoint.pt`` the state after the last
finished epoch; ``out/metrics.json`` the per-epoch history and the final scores.
"""

from __future__ import annotations

import dataclasses
import inspect
import platform
import time
from pathlib import Path
from typing import Any

import pyro
import torch

from guides import GUIDES, make_guide
from inference.checkpoint import CheckpointError, load_checkpoint, load_json, save_json
from inference.config import RESUMABLE, SCHEDULES, RunConfig, make_loss, training_beta
from inference.data import TensorData
from inference.datasets import load_dataset
from inference.distributed import Replicas, rank
from inference.semisupervised import SemiSupervisedData, accuracy
from inference.train import epoch_summary, fit, resolve_device
from inference.visualize import save_figures
from models import MODELS, make_model

# Figures vae-train writes into out/figures at the end of every run.
TRAIN_FIGURES = ("reconstructions", "samples", "curves")


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
