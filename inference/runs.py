"""A training run as a folder: its configuration, checkpoints, metrics and logs.

``out/config.json`` holds the :class:`~inference.config.RunConfig`, the resolved model and
guide configs and the data that was used; ``out/checkpoint.pt`` the state after the last
finished epoch; ``out/best.pt`` the pair at the epoch with the best validation ELBO;
``out/metrics.json`` the per-epoch history and the final scores; ``out/metrics.jsonl`` one
line per epoch as it finishes; ``out/tensorboard`` TensorBoard's event files. The folder is
locked while a run writes it (:func:`~inference.checkpoint.run_lock`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import platform
import time
from pathlib import Path
from typing import Any

import pyro
import torch

from guides import GUIDES, make_guide
from inference.check import non_density_site
from inference.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_json,
    remove_temporaries,
    run_lock,
    save_checkpoint,
    save_json,
)
from inference.config import RESUMABLE, SCHEDULES, RunConfig, make_loss, training_beta
from inference.data import TensorData
from inference.datasets import load_splits
from inference.distributed import Replicas, rank
from inference.run_checks import check_settings, start_over
from inference.run_folder import stale_results
from inference.semisupervised import SemiSupervisedData, accuracy
from inference.traces import kl_forms
from inference.tracking import JsonlLog, MlflowLog, TensorBoardLog
from inference.train import default_optimizer, fit, resolve_device
from inference.visualize import save_figures
from models import MODELS, make_model, tie

# Figures vae-train writes into out/figures at the end of every run.
TRAIN_FIGURES = ("reconstructions", "samples", "curves")


def _module_config(cls: type, config: RunConfig, extra: dict, data: TensorData) -> dict:
    """Shared flags and the data's shape, for the constructor arguments ``cls`` accepts."""
    accepts = inspect.signature(cls).parameters
    shared = {"z_dim": config.z_dim, "hidden": config.hidden, "activation": config.activation,
              "x_dim": data.event_shape.numel(), "image_shape": data.image_shape,
              "schema": data.info.get("schema")}  # a table's columns (inference.owndata)
    out = {k: v for k, v in shared.items() if v is not None and k in accepts}
    return {**out, **extra}


def build_pair(config: RunConfig, data: TensorData):
    """Model and guide of a run, sized for ``data``."""
    model_cls, guide_cls = MODELS[config.model], GUIDES[config.guide]
    model = make_model(config.model, **_module_config(model_cls, config, config.model_config, data))
    guide = make_guide(config.guide, **_module_config(guide_cls, config, config.guide_config, data))
    tie(model, guide)  # a model that shares a network with its guide takes it here
    return model, guide


def _saved_config(out: Path, log) -> RunConfig:
    """The configuration a run folder was started with: ``config.json``, else the copy in
    its checkpoint."""
    ckpt = out / "checkpoint.pt"
    try:
        return RunConfig.from_json(load_json(out / "config.json")["run"])
    except (CheckpointError, ValueError, TypeError, KeyError) as e:
        problem = (f"is damaged ({str(e).splitlines()[0]})" if (out / "config.json").exists()
                   else "is missing")
        if not ckpt.exists():
            raise CheckpointError(
                f"nothing to resume in {out}: it has no checkpoint.pt and its config.json "
                f"{problem}; drop --resume to start a new run there" if problem == "is missing"
                else f"cannot resume {out}: its config.json {problem} and there is no "
                f"checkpoint.pt holding a copy; start a new run in another folder") from None
    try:
        saved = RunConfig.from_json(load_checkpoint(ckpt)["config"]["run"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"cannot resume {out}: config.json {problem} and checkpoint.pt "
                              f"holds no usable copy ({e})") from None
    log(f"warning: {out / 'config.json'} {problem}; resuming with the copy in checkpoint.pt")
    return saved


def _starting_config(out: Path, asked: RunConfig, resume: bool, explicit: set[str],
                     log, main: bool = True) -> RunConfig:
    """The configuration to run with: ``asked`` for a new run, the saved one to resume."""
    ckpt = out / "checkpoint.pt"
    if not resume:
        if ckpt.exists():
            raise FileExistsError(f"{out} already holds a run; pass --resume to continue it or "
                                  f"choose another --out")
        if (out / "config.json").exists() and main:  # a run that finished no epoch
            start_over(out, log)
        return asked
    saved = _saved_config(out, log)
    for name in explicit - set(RESUMABLE):
        if getattr(asked, name) != getattr(saved, name):
            fresh = "" if ckpt.exists() else (f"; {out} has no finished epoch: drop --resume to "
                                              f"start a new run there with the new settings")
            raise ValueError(f"{name} {getattr(asked, name)!r} differs from the resumed run's "
                             f"{getattr(saved, name)!r}; a resumed run keeps its configuration "
                             f"(only {', '.join(RESUMABLE)} may change){fresh}")
    config = dataclasses.replace(saved, **{k: getattr(asked, k) for k in RESUMABLE
                                           if k in explicit})
    done = load_checkpoint(ckpt)["epoch"] if ckpt.exists() else 0
    if config.epochs < done:
        raise ValueError(f"the run in {out} has {done} finished epochs; --epochs {config.epochs} "
                         f"would not continue it: ask for {done} or more")
    log(f"resuming {out} from epoch {done + 1} of {config.epochs} ({done} finished)" if done
        else f"resuming {out}: no epoch was finished there, starting from epoch 1")
    return config


def load_data(config: RunConfig, data_dir=None, download: bool = True) -> dict[str, Any]:
    """The run's train, valid (None without one) and test splits; with ``config.data`` also
    ``record``, what was read and how it was scaled (:mod:`inference.owndata.load`)."""
    if config.data is not None:
        from inference.owndata.load import run_data

        data, record = run_data(config)
        data["record"] = record
    else:
        data = dict(zip(("train", "valid", "test"), load_splits(
            config.dataset, valid=config.valid, binarize=config.binarize, data_dir=data_dir,
            download=download, seed=config.seed), strict=True))
    if config.train_limit is not None:
        data["train"] = data["train"].subset(config.train_limit, seed=config.seed)
    if config.labels is not None:
        if data["train"].y is None:
            raise ValueError(f"--labels needs a labelled dataset; {config.dataset} has none")
        data["train"] = SemiSupervisedData.split(data["train"], config.labels, seed=config.seed,
                                                 labelled_every=config.labelled_every or None)
    return data


def describe_data(data: dict[str, Any]) -> str:
    i, test, valid = data["train"].info, data["test"].info, data["valid"]
    held = "" if valid is None else f", valid {valid.info['n']}"
    return (f"data: {i['name']} train {i['n']} x {'x'.join(map(str, i['shape']))} "
            f"({i['binarize']} binarization){held}, test {test['n']} ({test['binarize']}), "
            f"from {i['folder']}")


def train_run(config: RunConfig, out: str | Path, *, resume: bool = False,
              explicit: set[str] | None = None, data_dir=None, download: bool = True,
              progress: bool = True, figures=TRAIN_FIGURES, tensorboard: bool = True,
              mlflow: bool = False, divergence: float | None = 1e3,
              log=print) -> dict[str, Any]:
    """Train the pair of ``config`` into the folder ``out``; returns the metrics it saves.

    With ``resume=True`` the saved configuration of ``out`` is used; ``explicit`` names the
    fields the caller set on purpose, which must agree with it (except epochs, device and
    patience). Under torchrun every rank trains; rank 0 alone locks the folder, logs and
    writes files.
    """
    out, main = Path(out), rank() == 0
    with run_lock(out) if main else contextlib.nullcontext():
        if main:
            remove_temporaries(out)  # left by a run killed while writing
        trackers = {"tensorboard": tensorboard, "mlflow": mlflow}
        return _train_run(config, out, main, resume, explicit or set(), data_dir, download,
                          progress, figures, trackers, divergence, log if main else _silent)


def _train_run(config, out: Path, main: bool, resume: bool, explicit: set[str], data_dir,
               download: bool, progress: bool, figures, trackers: dict, divergence, log):
    config = _starting_config(out, config, resume, explicit, log, main)
    check_settings(config, explicit)
    pyro.set_rng_seed(config.seed)
    data = load_data(config, data_dir, download)
    record = data.pop("record", None)
    log(describe_data(data))
    model, guide = build_pair(config, data["train"])
    device, beta = resolve_device(config.device), training_beta(config)
    replicas = Replicas.join(device)  # torchrun's process group, None in one process
    if replicas is not None:
        device = replicas.device
        log(replicas.describe())
    log(f"pair: {config.model} + {config.guide}, loss {config.loss}, device {device}, "
        f"{config.epochs} epochs of batch {config.batch_size}, lr {config.lr}, seed {config.seed}"
        + ("" if beta is None else f", β {beta}"))
    saved = {"run": config.to_json(), "model": model.config, "guide": guide.config,
             "data": {k: None if v is None else v.info for k, v in data.items()},
             "versions": {"torch": str(torch.__version__), "pyro": str(pyro.__version__),
                          "python": platform.python_version()}}
    if config.loss == "meanfield":  # say where the closed-form KL applies
        with torch.random.fork_rng():  # a dynamic binarization draws
            forms = kl_forms(model, guide, *data["train"].head(2))
        log("meanfield KL: " + ", ".join(f"{k} {v}" for k, v in forms.items()))
    ckpt = out / "checkpoint.pt"
    logs = _logs(out, saved, ckpt, resume, **trackers) if main else []
    if main:
        save_json(out / "config.json", saved)
        if record is not None:  # what --data read and how it was scaled
            save_json(out / "data.json", record)
    start = time.perf_counter()
    try:
        history = fit(model, guide, data["train"], valid=data["valid"], test=data["test"],
                      loss=make_loss(config, len(data["train"])), epochs=config.epochs,
                      batch_size=config.batch_size,
                      lr=config.lr, device=device, seed=config.seed,
                      optimizer=lambda p: default_optimizer(p, lr=config.lr, eps=config.adam_eps,
                                                            beta1=config.adam_beta1),
                      lr_schedule=SCHEDULES[config.schedule](config.epochs), beta=beta,
                      clip_norm=config.clip_norm, patience=config.patience, divergence=divergence,
                      checkpoint=ckpt, resume=resume, progress=progress, config=saved,
                      fast=False if config.fast == "off" else config.fast,
                      on_epoch=logs, report=None if progress else log)
        prior = (_fit_prior(config, out, main, model, guide, data, device, resume, progress,
                            saved, log) if config.prior_epochs else None)
        metrics = _finish(config, out, main, model, guide, data, history, saved, figures, logs,
                          device, time.perf_counter() - start, log, prior)
        if main and resume:
            for line in stale_results(out):  # scores of weights the folder no longer holds
                log(line)
        return metrics
    finally:
        for each in logs:
            each.close()


def _logs(out: Path, saved: dict, ckpt: Path, resume: bool, tensorboard: bool,
          mlflow: bool) -> list:
    records = load_checkpoint(ckpt)["history"] if resume and ckpt.exists() else []
    logs = [JsonlLog(out / "metrics.jsonl", records)]
    if tensorboard:
        logs.append(TensorBoardLog(out / "tensorboard", saved))
    if mlflow:
        logs.append(MlflowLog(out, saved))
    return logs


def _fit_prior(config, out: Path, main: bool, model, guide, data, device, resume: bool,
               progress: bool, saved: dict, log) -> dict[str, Any]:
    """The VQ-VAE's second stage (:func:`inference.vq.fit_code_prior`), checkpointed in
    ``out/prior``; ``best.pt`` then holds the chosen VQ-VAE with its fitted prior."""
    import math

    from inference.run_folder import checkpoint_path
    from inference.vq import fit_code_prior

    ckpt = out / "prior" / "checkpoint.pt"
    log(f"code prior: {config.prior_epochs} epoch{'s' * (config.prior_epochs != 1)} of maximum "
        f"likelihood on the training set's codes")
    history = fit_code_prior(model, guide, data["train"], data["valid"],
                             epochs=config.prior_epochs, batch_size=config.batch_size,
                             lr=config.lr, device=device, seed=config.seed, checkpoint=ckpt,
                             resume=resume and ckpt.exists(), progress=progress,
                             report=None if progress else log, train_eval_points=0,
                             config={"for": saved["model"]})
    if main:
        state = load_checkpoint(checkpoint_path(out, "best"))
        state["model"] = model.state_dict()  # the chosen epoch's VQ-VAE, its prior fitted
        save_checkpoint(out / "best.pt", state)
    best = history.best_epoch or len(history)
    nll = -history[best - 1]["valid_elbo"] if history.best_epoch else None
    summary = {"epochs": len(history), "best_epoch": history.best_epoch, "valid_nll": nll}
    if nll is not None:
        summary["valid_bits_per_position"] = nll / (model.length * math.log(2))
        log(f"code prior: valid −log p(k) {nll:.2f} nats, "
            f"{summary['valid_bits_per_position']:.3f} bits per position (epoch {best})")
    if main and data["test"] is not None:  # the bound with the prior that replaced the uniform
        from inference.evaluate import elbo_terms

        with torch.no_grad():
            summary["test"] = elbo_terms(model, guide, data["test"])
    return summary


def _finish(config, out, main, model, guide, data, history, saved, figures, logs, device,
            seconds, log, prior=None) -> dict[str, Any]:
    """Report, save metrics.json and the figures; returns the metrics."""
    log(f"fast path: {history.fast_path}")
    test = history.test or {}
    metrics = {**{f"test_{k}": v for k, v in test.items()}, **history.summary(),
               "epochs": len(history), "seconds_this_session": seconds, "device": str(device),
               "data": saved["data"], "history": history.records}
    if history.best_epoch is not None:
        metrics["best_valid_elbo"] = history[history.best_epoch - 1]["valid_elbo"]
    if data["test"] is not None and non_density_site(model, data["test"].head(1)[0]):
        metrics["elbo_is_bound"] = False  # a cross-entropy likelihood: no bound on log p(x)
    if prior is not None:
        metrics["prior"] = prior
        if "test" in prior:  # the run's bound is the one with its fitted prior
            metrics["test_uniform_prior"] = metrics.get("test")
            metrics["test"] = prior["test"]
            metrics.update({f"test_{k}": v for k, v in prior["test"].items()})
    if not main:
        return metrics
    if config.loss == "m2":
        metrics["test_accuracy"] = accuracy(guide, data["test"])
        log(f"test accuracy of q(y | x): {metrics['test_accuracy']:.4f}")
    save_json(out / "metrics.json", metrics)
    if figures:
        boards = [each for each in logs if hasattr(each, "figure")]

        def to_boards(name, fig):
            for board in boards:
                board.figure(name, fig)

        _log_figures(save_figures(model, guide, data["test"], out / "figures", figures,
                                  records=history.records, seed=config.seed,
                                  on_figure=to_boards), log)
    return metrics


def _silent(*args, **kwargs) -> None:
    """The log of ranks other than 0."""


def _log_figures(done: dict, log) -> None:
    for name, result in done.items():
        log(f"figure {name}: {result}")
