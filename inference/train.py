"""One training loop for every model/guide pair and every Pyro objective."""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyro
import torch
from pyro.infer import ELBO, Trace_ELBO
from tqdm import tqdm

from inference.capture import FastPath
from inference.check import check_support
from inference.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from inference.data import TensorData, as_data
from inference.evaluate import elbo_terms, evaluate_elbo
from inference.handlers import BetaMessenger
from inference.pair import Pair, as_pair, module_pair
from inference.programs import device_of

READ_EVERY_S = 1.0  # seconds between reads of the running loss (one host sync each)


class TrainingDiverged(FloatingPointError):
    """The training loss became NaN or infinite."""


@dataclass
class History:
    """Per-epoch records, in nats per data point: ``train_elbo`` (the training objective's
    running mean over the epoch), ``test_elbo`` (None without test data),
    ``{train,test}_reconstruction`` and ``{train,test}_kl`` (E_q[log p(x | z)] and
    reconstruction − ELBO, on the test set and on the first ``train_eval_points`` training
    points), plus ``epoch``, ``seconds`` and ``steps``."""

    records: list[dict[str, Any]] = field(default_factory=list)
    fast_path: str = ""

    @property
    def train_elbo(self) -> list[float]:
        return [r["train_elbo"] for r in self.records]

    @property
    def test_elbo(self) -> list[float | None]:
        return [r["test_elbo"] for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.records[i]


def iwae_schedule(epoch: int) -> float:
    """Burda et al. (2016)'s learning-rate factor: stage i = 0, 1, ... lasts 3**i epochs at
    10**(-i/7), so epochs 1 | 2-4 | 5-13 | ... and 3,280 epochs for i = 0..7."""
    stage, end = 0, 1
    while epoch > end:
        stage += 1
        end += 3**stage
    return 10 ** (-stage / 7)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` or ``"auto"``: CUDA when available, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch.cuda.is_available() is False; "
                         "use device='cpu' or 'auto'")
    return device


def parameters(*modules: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Trainable parameters of several modules, each once."""
    seen: dict[int, torch.nn.Parameter] = {}
    for m in modules:
        for p in m.parameters():
            if p.requires_grad:
                seen.setdefault(id(p), p)
    return list(seen.values())


def _rng_state() -> dict[str, Any]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return {"torch": torch.get_rng_state(), "cuda": cuda, "python": random.getstate()}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(state["python"])


def check_dataset(pair: Pair, data) -> None:
    """Check every observed value of a tensor dataset against the model's likelihood."""
    if isinstance(data, TensorData) and data.binarize == "none":
        tr = pyro.poutine.trace(pair.model).get_trace(*data.head(2))
        site = pair.sites.x
        check_support(site, tr.nodes[site]["fn"].support, data.x)


class Trainer:
    """The state of one training run: pair, objective, optimizer, history."""

    def __init__(self, model, guide, loss: ELBO, optimizer: torch.optim.Optimizer, *,
                 seed: int | None, clip_norm: float | None, progress: bool,
                 eval_loss: ELBO | None = None, eval_batch_size: int = 1000,
                 train_eval_points: int = 0, fast: bool | str = False,
                 lr_schedule: Callable[[int], float] | None = None,
                 beta: float | Callable[[float], float] | None = None,
                 pair: Pair | None = None):
        self.pair = pair or module_pair(model, guide)
        self.model, self.guide = self.pair.model, self.pair.guide
        self.loss, self.optimizer = loss, optimizer
        self.beta_schedule = beta if callable(beta) else None
        self.beta = None if beta is None or beta == 1 else BetaMessenger(torch.tensor(
            float(beta(0.0) if callable(beta) else beta), device=device_of(model, guide)))
        self.fast = FastPath(loss, self.model, self.guide, fast,
                             live=[] if self.beta is None else [(self.beta, "beta")],
                             refusal=self.pair.capture_refusal())
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.seed, self.clip_norm, self.progress = seed, clip_norm, progress
        self.eval_loss, self.eval_batch_size = eval_loss, eval_batch_size
        self.train_eval_points = train_eval_points
        self.lr_schedule = lr_schedule
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.history = History()

    def handled(self):
        """The context a training step runs in: the β handler, if any."""
        return contextlib.nullcontext() if self.beta is None else self.beta

    def step(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """One gradient step; returns the batch loss as a device tensor (no host sync)."""
        with self.handled():
            return self._step(x, y)

    def _step(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if self.fast.active or hasattr(self.loss, "differentiable_loss"):
            loss = (self.fast(x, y) if self.fast.active else
                    self.loss.differentiable_loss(self.model, self.guide, x, y))
            loss.backward()
            value = loss.detach()
        else:  # objectives such as RenyiELBO only offer loss_and_grads
            value = torch.as_tensor(self.loss.loss_and_grads(self.model, self.guide, x, y))
        if self.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return value

    def train_epoch(self, data, epoch: int, epochs: int, batch_size: int) -> tuple[float, int]:
        """Mean training objective per data point (as an ELBO, in nats) and steps taken."""
        order = torch.Generator().manual_seed(1_000_003 * (self.seed or 0) + epoch)
        n_steps = (data.num_batches(batch_size) if hasattr(data, "num_batches")
                   else math.ceil(len(data) / batch_size))
        bar = tqdm(total=n_steps, desc=f"epoch {epoch}/{epochs}", disable=not self.progress,
                   leave=False, dynamic_ncols=True)
        total, seen, last_read = None, 0, time.perf_counter()
        with bar, pyro.validation_enabled(False):
            for i, (x, y) in enumerate(data.batches(batch_size, shuffle=True, generator=order)):
                if self.beta_schedule is not None:
                    self.beta.set(self.beta_schedule(epoch - 1 + i / n_steps))
                value = self.step(x, y).to(torch.float64)
                total = value if total is None else total + value
                seen += len(x)
                if time.perf_counter() - last_read >= READ_EVERY_S or i + 1 == n_steps:
                    last_read = time.perf_counter()
                    running = total.item() / seen  # the one host sync per READ_EVERY_S
                    if not math.isfinite(running):
                        raise TrainingDiverged(f"the loss became {running} in epoch {epoch} "
                                               f"before step {i + 1}")
                    bar.set_postfix(elbo=f"{-running:.2f}", refresh=False)
                bar.update()
        return -total.item() / seen, n_steps

    def run_epoch(self, train, test, epoch: int, epochs: int,
                  batch_size: int) -> dict[str, Any]:
        """Train one epoch, score it, and append the epoch's record."""
        start = time.perf_counter()
        if self.lr_schedule is not None:
            for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
                group["lr"] = base * self.lr_schedule(epoch)
        train_elbo, steps = self.train_epoch(train, epoch, epochs, batch_size)
        record: dict[str, Any] = {"epoch": epoch, "train_elbo": train_elbo, "test_elbo": None}
        if self.train_eval_points and isinstance(train, TensorData):
            terms = elbo_terms(self.model, self.guide, train.take(self.train_eval_points),
                               batch_size=self.eval_batch_size)
            record.update(train_reconstruction=terms["reconstruction"], train_kl=terms["kl"])
        if test is not None:
            terms = elbo_terms(self.model, self.guide, test, batch_size=self.eval_batch_size)
            record.update(test_elbo=terms["elbo"], test_reconstruction=terms["reconstruction"],
                          test_kl=terms["kl"])
            if self.eval_loss is not None:
                record["test_elbo"] = evaluate_elbo(self.model, self.guide, test,
                                                    loss=self.eval_loss,
                                                    batch_size=self.eval_batch_size)
        record.update(seconds=time.perf_counter() - start, steps=steps,
                      lr=self.optimizer.param_groups[0]["lr"])
        if self.beta is not None:
            record["beta"] = float(self.beta.beta)
        self.history.records.append(record)
        return record


    def state(self, config: dict | None) -> dict[str, Any]:
        return {"format": 1, "epoch": len(self.history), **self.pair.state_dict(),
                "optimizer": self.optimizer.state_dict(), "history": self.history.records,
                "rng": _rng_state(), "config": config or {}}

    def restore(self, state: dict[str, Any], path: Path) -> None:
        try:
            self.pair.load_state_dict(state)
            self.optimizer.load_state_dict(state["optimizer"])
        except (KeyError, RuntimeError, ValueError) as e:
            first = str(e).splitlines()[0]
            raise CheckpointError(f"checkpoint {path} does not fit this model and guide "
                                  f"({first}); resume with the configuration that wrote it") from e
        self.history = History(list(state["history"]), self.history.fast_path)
        _set_rng_state(state["rng"])

    def resume(self, path: Path) -> None:
        """Continue from the checkpoint at ``path``, if one is there."""
        if path.exists():
            self.restore(load_checkpoint(path), path)


def fit(model, guide, train: Any, *, test: Any = None, loss: ELBO | None = None,
        epochs: int = 10, batch_size: int = 128, lr: float = 1e-3,
        optimizer: Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer] | None = None,
        device: str | torch.device | None = None, seed: int | None = 0,
        checkpoint: str | Path | None = None, resume: bool = False,
        eval_loss: ELBO | None = None, eval_batch_size: int = 1000,
        train_eval_points: int = 2000, fast: bool | str = "auto",
        lr_schedule: Callable[[int], float] | None = None,
        beta: float | Callable[[float], float] | None = None,
        clip_norm: float | None = None, progress: bool = True, config: dict | None = None,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
        sites: dict | None = None) -> History:
    """Train ``guide`` and ``model`` jointly by stochastic variational inference.

    ``model`` and ``guide``: anything Pyro's SVI takes (:mod:`inference.programs`):
    PyroModules, methods of an ``nn.Module`` (networks registered with ``pyro.module``),
    functions with ``pyro.param``; called as ``fn(x)`` or ``fn(x, y=None)``; ``sites`` names
    the data and latent sites where the traces cannot tell (``{"x": "obs"}``).
    ``train``/``test``: a tensor (N, D), an ``(x, y)`` pair, :class:`TensorData` or a torch
    ``Dataset``. ``loss``: any Pyro ELBO (default ``Trace_ELBO()``). ``optimizer``: a
    function of the parameters (default ``torch.optim.Adam(params, lr=lr)``): one optimizer
    over all parameters of model and guide, found as Pyro's SVI finds them
    (:func:`~inference.pair.as_pair`). The pair and the data are checked once
    (:func:`~inference.check_pair`), then the hot loop runs with Pyro's validation off.
    ``checkpoint``: written atomically after every epoch; ``resume=True`` continues from
    it. After every epoch the test set is scored with one draw of z per point (ELBO,
    reconstruction and KL, see :func:`~inference.evaluate.elbo_terms`), and so are the
    first ``train_eval_points`` training points (0 turns that off); ``eval_loss`` (a Pyro
    ELBO) replaces the test ELBO's estimator. ``fast="auto"`` trains with the lean
    equivalent of ``loss`` (:func:`~inference.objectives.lean_equivalent`), captured as a
    graph per batch shape and compiled on CUDA (:class:`~inference.capture.FastPath`), after
    checking on the first batch that it gives the same loss under the same draws;
    ``fast="compile"`` compiles on the CPU too, ``fast=False`` keeps Pyro's own objective,
    ``fast=True`` insists on the fast path. Returns the :class:`History`, whose
    ``fast_path`` says which ran. ``lr_schedule(epoch)`` multiplies the optimizer's learning
    rates in each epoch, e.g. :func:`iwae_schedule`. ``beta``: a number, or a schedule of
    the progress in epochs (:mod:`inference.handlers`), that scales every latent site's
    log-density during training steps (β-VAE, KL annealing); evaluation stays at β = 1.
    Under torchrun (or in an initialized process group) every process trains its slice of
    each batch under DistributedDataParallel and rank 0 alone checkpoints and prints
    (:mod:`inference.distributed`).
    """
    from inference.distributed import Replicas  # it builds on this module's Trainer

    replicas = Replicas.join(resolve_device(device))  # None in a single process
    device = resolve_device(device) if replicas is None else replicas.device
    progress = progress and (replicas is None or replicas.is_main)
    if seed is not None:
        pyro.set_rng_seed(seed)
    pair, train, test = _prepare(model, guide, train, test, device, batch_size, sites)
    loss = Trace_ELBO() if loss is None else loss
    make_opt = optimizer or (lambda params: torch.optim.Adam(params, lr=lr))
    make_trainer = Trainer if replicas is None else replicas.trainer
    trainer = make_trainer(pair.model, pair.guide, loss, make_opt(pair.parameters()),
                           seed=seed, clip_norm=clip_norm, progress=progress,
                           eval_loss=eval_loss, eval_batch_size=eval_batch_size,
                           train_eval_points=train_eval_points, fast=fast,
                           lr_schedule=lr_schedule, beta=beta, pair=pair)
    with trainer.handled():
        verified = trainer.fast.verify(*train.head(min(batch_size, len(train))))
    if not verified and fast in (True, "compile"):
        raise ValueError(f"fast={fast!r}, but the fast path is {trainer.fast.reason}")
    if resume and checkpoint is not None:
        trainer.resume(Path(checkpoint))
    for epoch in range(len(trainer.history) + 1, epochs + 1):
        trainer.history.fast_path = trainer.fast.reason
        try:
            record = trainer.run_epoch(train, test, epoch, epochs, batch_size)
        except TrainingDiverged as e:
            kept = (f"the checkpoint of epoch {epoch - 1} is kept at {checkpoint}"
                    if checkpoint is not None and epoch > 1 else "no checkpoint was written")
            raise TrainingDiverged(f"{e}; {kept}; try a smaller learning rate") from None
        trainer.history.fast_path = trainer.fast.reason
        if checkpoint is not None and (replicas is None or replicas.is_main):
            save_checkpoint(checkpoint, trainer.state(config))
        if progress:
            tqdm.write(epoch_summary(record))
        if on_epoch is not None:
            on_epoch(record)
    return trainer.history


def _prepare(model, guide, train, test, device: torch.device, batch_size: int, sites):
    """Check the pair once on a first batch where it lives, then move the pair and the
    data to ``device`` once, and check every observed value."""
    train, test = as_data(train), None if test is None else as_data(test)
    here = device_of(model, guide)
    head = [None if t is None else t.to(here) for t in train.head(min(batch_size, len(train)))]
    pair = as_pair(model, guide, *head, sites=sites).to(device)
    train, test = train.to(device), None if test is None else test.to(device)
    for data in (train, test):
        if data is not None:
            check_dataset(pair, data)
    return pair, train, test


def epoch_summary(r: dict[str, Any]) -> str:
    """One line per epoch: ``epoch 3: train ELBO -120.41  test ELBO -118.20  (5.2 s)``."""
    test = "" if r["test_elbo"] is None else f"  test ELBO {r['test_elbo']:.2f}"
    return f"epoch {r['epoch']}: train ELBO {r['train_elbo']:.2f}{test}  ({r['seconds']:.1f} s)"
