"""One training loop for every model/guide pair and every Pyro objective."""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pyro
import torch
from pyro.infer import ELBO, Trace_ELBO
from tqdm import tqdm

from inference.check import DataError
from inference.checkpoint import WriteError, run_lock, save_checkpoint
from inference.data import as_data
from inference.distributed import DistributedTrainer, Replicas
from inference.pair import as_pair
from inference.programs import device_of, resolve_device
from inference.run_folder import registry_config
from inference.trainer import History, Trainer, TrainingDiverged, check_dataset
from inference.validate import (
    non_negative_float,
    non_negative_int,
    optional,
    positive_float,
    positive_int,
)

__all__ = ["History", "Trainer", "TrainingDiverged", "default_optimizer", "epoch_summary", "fit",
           "cosine_schedule", "iwae_schedule", "parameters", "read_path", "resolve_device"]


def iwae_schedule(epoch: int) -> float:
    """Burda et al. (2016)'s learning-rate factor: stage i = 0, 1, ... lasts 3**i epochs at
    10**(-i/7), so epochs 1 | 2-4 | 5-13 | ... and 3,280 epochs for i = 0..7."""
    stage, end = 0, 1
    while epoch > end:
        stage += 1
        end += 3**stage
    return 10 ** (-stage / 7)


def cosine_schedule(epochs: int) -> Callable[[int], float]:
    """Cosine annealing (Loshchilov & Hutter 2017, SGDR, without restarts), one step per epoch:
    epoch e = 1, ..., ``epochs`` runs at ½ (1 + cos(π (e − 1) / epochs)) of the base rate,
    from 1 down to nearly 0 in the last epoch.

    >>> [round(cosine_schedule(4)(e), 3) for e in range(1, 5)]
    [1.0, 0.854, 0.5, 0.146]
    """
    positive_int("epochs", epochs)
    return lambda epoch: 0.5 * (1 + math.cos(math.pi * (epoch - 1) / epochs))


def parameters(*modules: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Trainable parameters of several modules, each once."""
    seen: dict[int, torch.nn.Parameter] = {}
    for m in modules:
        for p in m.parameters():
            if p.requires_grad:
                seen.setdefault(id(p), p)
    return list(seen.values())


def default_optimizer(params, lr: float = 1e-3, eps: float = 1e-8,
                      beta1: float = 0.9) -> torch.optim.Optimizer:
    """``fit``'s optimizer: torch's Adam (β2 0.999), its fused kernel (one pass over every
    parameter per step) where the parameters' device and dtypes allow it, the loop of tensors
    (foreach) otherwise. Both compute Adam's update; they differ only in float rounding."""
    params, betas = list(params), (beta1, 0.999)
    try:
        return torch.optim.Adam(params, lr=lr, eps=eps, betas=betas, fused=True)
    except (RuntimeError, ValueError):  # a device or dtype the fused kernel does not take
        return torch.optim.Adam(params, lr=lr, eps=eps, betas=betas)


def fit(model, guide, train: Any, *, valid: Any = None, test: Any = None,
        loss: ELBO | None = None, epochs: int = 10, batch_size: int = 128, lr: float = 1e-3,
        optimizer: Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer] | None = None,
        device: str | torch.device | None = None, seed: int | None = 0,
        checkpoint: str | Path | None = None, resume: bool = False,
        patience: int | None = None, eval_loss: ELBO | None = None,
        eval_batch_size: int = 1000, train_eval_points: int = 2000,
        fast: bool | str = "auto", lr_schedule: Callable[[int], float] | None = None,
        beta: float | Callable[[float], float] | None = None,
        clip_norm: float | None = None, divergence: float | None = 1e3,
        progress: bool = True, config: dict | None = None,
        on_epoch: Callable[[dict[str, Any]], None] | Sequence[Callable] = (),
        report: Callable[[str], None] | None = None, sites: dict | None = None) -> History:
    """Train ``guide`` and ``model`` jointly by stochastic variational inference.

    ``model`` and ``guide``: anything Pyro's SVI takes (:mod:`inference.programs`);
    ``sites`` names the data and latent sites where the traces cannot tell
    (``{"x": "obs"}``). ``train``, ``valid``, ``test``: a tensor (N, D), an ``(x, y)`` pair,
    :class:`TensorData`, a torch ``Dataset`` or the path of your own data (every row of a
    folder of images, an array file or a table: :func:`read_path`). ``loss``: any Pyro ELBO
    (default ``Trace_ELBO()``). ``optimizer``: a function of the parameters (default
    :func:`default_optimizer`, torch's Adam at ``lr``, fused where it can be), one optimizer
    over all parameters of the pair, found as Pyro's SVI finds them
    (:func:`~inference.pair.as_pair`). The pair and the data are checked once
    (:func:`~inference.check_pair`), then the hot loop runs with Pyro's validation off.

    After every epoch the validation data (``valid``) and a fixed random ``train_eval_points``
    of the training points (stratified by label) are scored with one draw of z per point
    (ELBO, reconstruction and KL, :func:`~inference.elbo_terms`; ``eval_loss`` replaces the
    ELBO's estimator). The best epoch is the one with the highest validation ELBO;
    ``patience`` stops training after that many epochs without a better one. With
    validation data ``fit`` returns with the best epoch's weights, and ``test`` is scored
    once, at the end, with them
    (``history.test``): choose on validation, report on test.

    ``checkpoint``: written atomically after every epoch (and ``best.pt`` beside it at every
    new best); its folder is locked for the run (:func:`~inference.checkpoint.run_lock`);
    ``resume=True`` continues from it. ``divergence`` (nats per data dimension; None: off)
    stops a run whose running loss per point exceeds it times the data's dimension, or whose
    held-out ELBO, when training on the plain ELBO, falls below the pair's before training.
    ``fast``: :class:`~inference.capture.FastPath` (``"auto"``, ``"compile"``, ``True``,
    ``False``); ``history.fast_path`` says which ran. ``lr_schedule(epoch)`` multiplies the
    learning rates in each epoch, e.g. :func:`iwae_schedule`. ``beta``: a number, or a
    schedule of the progress in epochs (:mod:`inference.handlers`), that scales every latent
    site's log-density during training steps (β-VAE, KL annealing); scores stay at β = 1.
    ``on_epoch``: a function, or several, called with each epoch's record. Each epoch's line
    (:func:`epoch_summary`) goes to ``report``, by default printed with the progress bar's
    ``tqdm.write`` when ``progress`` is on. Under torchrun
    (or in an initialized process group) every process trains its slice of each batch under
    DistributedDataParallel and rank 0 alone checkpoints and prints
    (:mod:`inference.distributed`).
    """
    _check_arguments(epochs=epochs, batch_size=batch_size, eval_batch_size=eval_batch_size,
                     train_eval_points=train_eval_points, lr=None if optimizer else lr,
                     patience=patience, clip_norm=clip_norm, divergence=divergence)
    replicas = Replicas.join(resolve_device(device))  # None in a single process
    device = resolve_device(device) if replicas is None else replicas.device
    main = replicas is None or replicas.is_main
    if seed is not None:
        pyro.set_rng_seed(seed)
    pair, data = _prepare(model, guide, {"train": train, "valid": valid, "test": test},
                          device, batch_size, sites)
    loss = Trace_ELBO() if loss is None else loss
    make_opt = optimizer or functools.partial(default_optimizer, lr=lr)
    make_trainer = Trainer if replicas is None else functools.partial(DistributedTrainer,
                                                                      replicas=replicas)
    trainer = make_trainer(pair.model, pair.guide, loss, make_opt(pair.parameters()),
                           seed=seed, clip_norm=clip_norm, progress=progress and main,
                           eval_loss=eval_loss, eval_batch_size=eval_batch_size,
                           train_eval_points=train_eval_points, fast=fast,
                           lr_schedule=lr_schedule, beta=beta, pair=pair, divergence=divergence)
    with trainer.handled():
        verified = trainer.fast.verify(*data["train"].head(min(batch_size, len(data["train"]))))
    if not verified and fast in (True, "compile"):
        raise ValueError(f"fast={fast!r}, but the fast path is {trainer.fast.reason}")
    checkpoint = None if checkpoint is None else Path(checkpoint)
    config = registry_config(pair.model, pair.guide) if config is None else config
    callbacks = [on_epoch] if callable(on_epoch) else list(on_epoch)
    report = report or (tqdm.write if progress else None)
    if report is not None and main:
        callbacks.insert(0, lambda r: report(epoch_summary(r, trainer.history)))
    with run_lock(checkpoint.parent) if checkpoint and main else contextlib.nullcontext():
        if resume and checkpoint is not None:
            trainer.resume(checkpoint)
        _epochs(trainer, data, epochs, batch_size, patience=patience, callbacks=callbacks,
                checkpoint=checkpoint if main else None, config=config)
        if data["test"] is not None:
            trainer.restore_best()
            trainer.history.test = trainer.final_score(data["test"])
            if checkpoint is not None and main and trainer.best_state is not None:
                save_checkpoint(checkpoint.with_name("best.pt"), trainer.best_checkpoint(config))
        elif data["valid"] is not None:
            trainer.restore_best()
    return trainer.history


def _check_arguments(**values) -> None:
    for name in ("epochs", "batch_size", "eval_batch_size"):
        positive_int(name, values[name])
    non_negative_int("train_eval_points", values["train_eval_points"])
    optional(positive_int, "patience", values["patience"])
    optional(non_negative_float, "lr", values["lr"])  # 0 holds the pair still
    for name in ("clip_norm", "divergence"):
        optional(positive_float, name, values[name])


def _epochs(trainer: Trainer, data: dict, epochs: int, batch_size: int, *, patience,
            callbacks, checkpoint: Path | None, config) -> None:
    """Train up to ``epochs`` epochs: score, keep the best, stop early, checkpoint, report."""
    history = trainer.history
    held_out = data["valid"] if data["valid"] is not None else trainer.train_points(
        data["train"])  # the points every epoch scores: the baseline reads the same ones
    if not history.records and trainer.divergence is not None and held_out is not None:
        history.initial_elbo = trainer.initial_score(held_out)
    for epoch in range(len(history) + 1, epochs + 1):
        if history.stopped_early:
            break
        history.fast_path = trainer.fast.reason
        try:
            record = trainer.run_epoch(data["train"], data["valid"], epoch, epochs, batch_size)
            trainer.check_scores(record)
        except TrainingDiverged as e:
            kept = (f"the checkpoint of epoch {epoch - 1} is kept at {checkpoint}"
                    if checkpoint is not None and epoch > 1 else "no checkpoint was written")
            raise TrainingDiverged(f"{e}; {kept}; try a smaller learning rate") from None
        best = history.best_epoch
        improved = record.get("valid_elbo") is not None and (
            best is None or record["valid_elbo"] > history[best - 1]["valid_elbo"])
        if improved:
            history.best_epoch = epoch
            trainer.remember_best()
        if patience is not None and history.best_epoch is not None:
            history.stopped_early = epoch - history.best_epoch >= patience
        history.fast_path = trainer.fast.reason
        if checkpoint is not None:
            _save(checkpoint, trainer.state(config), epoch)
            if improved:
                _save(checkpoint.with_name("best.pt"), trainer.best_checkpoint(config), epoch)
        for callback in callbacks:
            callback(record)
    history.fast_path = trainer.fast.reason


def _save(path: Path, state: dict, epoch: int) -> None:
    try:
        save_checkpoint(path, state)
    except WriteError as e:
        kept = f"its copy of epoch {epoch - 1} is kept" if epoch > 1 else "no epoch was saved"
        raise WriteError(f"{e}; {kept}: free the space or fix the folder, then resume "
                         f"(--resume)") from e


def read_path(data: Any) -> Any:
    """Every row of your own data when ``data`` is its path (a folder of images, an array file
    or a table: :func:`inference.owndata.load.load_source`), else ``data``."""
    if not isinstance(data, (str, os.PathLike)):
        return data
    from inference.owndata.load import load_source

    return load_source(data, valid=0, test=0)[0]["train"]


def _prepare(model, guide, data: dict, device: torch.device, batch_size: int, sites):
    """Check the pair once on a first batch where it lives, then move the pair and the
    data to ``device`` once, and check every observed value."""
    data = {k: None if v is None else as_data(read_path(v)) for k, v in data.items()}
    for name, d in data.items():
        if d is not None and len(d) == 0:
            raise DataError(f"the {name} data is empty (0 rows)")
    train = data["train"]
    here = device_of(model, guide)
    head = [None if t is None else t.to(here) for t in train.head(min(batch_size, len(train)))]
    pair = as_pair(model, guide, *head, sites=sites).to(device)
    data = {k: None if v is None else v.to(device) for k, v in data.items()}
    for d in data.values():
        if d is not None:
            check_dataset(pair, d)
    return pair, data


def epoch_summary(r: dict[str, Any], history: History | None = None) -> str:
    """One line per epoch, e.g. ``epoch 3: train ELBO -117.90  valid ELBO -118.20  (running
    ELBO -121.30, 5.2 s)``: post-epoch scores first, the running objective in brackets."""
    name = "objective" if history is None else history.objective_name
    score = "ELBO" if history is None else history.score_name
    scores = [f"{which} {score} {r[f'{which}_elbo']:.2f}" for which in ("train", "valid")
              if r.get(f"{which}_elbo") is not None]
    beta = "" if r.get("beta") is None else f", β {r['beta']:.3g}"
    running = f"(running {name} {r['objective']:.2f}{beta}, {r['seconds']:.1f} s)"
    return f"epoch {r['epoch']}: " + "  ".join([*scores, running])
