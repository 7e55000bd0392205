"""One training run's state, and what one epoch of it does: steps, scores, a record.

:func:`inference.fit` builds a :class:`Trainer` and runs its epochs; the trainer holds the
pair, the objective, the optimizer and the :class:`History`, and turns into a checkpoint
(:meth:`Trainer.state`) and back (:meth:`Trainer.restore`).
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyro
import torch
from pyro.infer import ELBO
from tqdm import tqdm

from inference.capture import FastPath
from inference.check import check_support
from inference.checkpoint import CheckpointError, load_checkpoint
from inference.data import TensorData
from inference.evaluate import elbo_terms, evaluate_elbo
from inference.handlers import BetaMessenger
from inference.pair import Pair, module_pair
from inference.plates import whole_plates
from inference.programs import device_of

READ_EVERY_S = 1.0  # seconds between reads of the running loss (one host sync each)
SCORES = ("elbo", "reconstruction", "kl")


class TrainingDiverged(FloatingPointError):
    """The training loss, or a held-out score, left the range a working run stays in."""


@dataclass
class History:
    """What a run did, in nats per data point.

    Per epoch (``records``): ``objective``, the training objective's running mean over the
    epoch's steps, as a value to maximize (``objective_name`` says which: the ELBO, a
    β-weighted ELBO, an importance-weighted bound...), taken while the weights change;
    ``train_elbo``, ``train_reconstruction``, ``train_kl``, one-draw ELBO terms of a fixed
    random ``train_eval_points`` of the training points (stratified by label, seed 0: files
    can be ordered by class) after the epoch (:func:`~inference.elbo_terms`);
    ``valid_*``, the same on the validation data; plus ``epoch``, ``seconds``, ``steps``,
    ``lr`` and ``beta``. Once per run: ``best_epoch`` (highest ``valid_elbo``),
    ``stopped_early``, ``initial_elbo`` (the held-out ELBO before training) and ``test``,
    the test data's ELBO terms scored once at the end with the selected weights.
    ``score_name`` says what the ``*_elbo`` scores are: the ELBO, or the log-likelihood
    itself for a fully observed model (a guide without latent sites).
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    fast_path: str = ""
    objective_name: str = "ELBO"
    best_epoch: int | None = None
    stopped_early: bool = False
    initial_elbo: float | None = None
    test: dict[str, float] | None = None
    score_name: str = "ELBO"

    @property
    def objective(self) -> list[float]:
        return [r["objective"] for r in self.records]

    @property
    def train_elbo(self) -> list[float | None]:
        return [r.get("train_elbo") for r in self.records]

    @property
    def valid_elbo(self) -> list[float | None]:
        return [r.get("valid_elbo") for r in self.records]

    def summary(self) -> dict[str, Any]:
        """Everything but the records (saved in checkpoints and metrics.json)."""
        return {"objective_name": self.objective_name, "best_epoch": self.best_epoch,
                "stopped_early": self.stopped_early, "initial_elbo": self.initial_elbo,
                "test": self.test, "fast_path": self.fast_path}

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.records[i]


def objective_name(loss: ELBO, beta, observed: bool = False) -> str:
    """What a loss's value per point measures, in words (``observed``: the model has no
    latent site, so the ELBO is the log-likelihood)."""
    from inference.objectives import IWAE
    from inference.semisupervised import SemiSupervisedELBO

    k = getattr(loss, "num_particles", 1)
    if getattr(loss, "objective_name", None):  # an objective that names itself
        name = loss.objective_name
    elif isinstance(loss, IWAE):
        name = f"{type(loss).__name__} bound (K={k})" if type(loss) is IWAE else (
            f"IWAE bound (K={k}, {type(loss).__name__} gradient)")
    elif isinstance(loss, SemiSupervisedELBO):
        name = "M2 objective (ELBO + classification)"
    elif type(loss).__name__ == "RenyiELBO":
        name = f"Rényi bound (α={loss.alpha:g}, K={k})"
    elif observed and type(loss).__name__ in ("Trace_ELBO", "TraceMeanField_ELBO"):
        name = "log-likelihood"
    else:
        name = "ELBO" if k == 1 else f"ELBO (mean of {k} particles)"
    return name if beta is None else f"β-weighted {name}"


def _rng_state() -> dict[str, Any]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return {"torch": torch.get_rng_state(), "cuda": cuda, "python": random.getstate()}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(state["python"])


def check_dataset(pair: Pair, data) -> None:
    """Check every observed value of a tensor dataset against the model's likelihood; a
    model whose data site observes something else than ``x`` (a function of the labels, as
    the CVAE of Pyro's examples does) has the values of a first batch checked."""
    if isinstance(data, TensorData) and data.binarize == "none":
        head = data.head(2)
        with whole_plates(2):
            tr = pyro.poutine.trace(pair.model).get_trace(*head)
        node = tr.nodes[pair.sites.x]
        value = node["value"]
        # a table's missing cells are NaN in the batch and in the site: equal, not different
        observes_x = value.shape == head[0].shape and bool(
            torch.isclose(value, head[0], rtol=0, atol=0, equal_nan=True).all())
        check_support(pair.sites.x, node["fn"].support, data.x if observes_x else value)


class Trainer:
    """The state of one training run: pair, objective, optimizer, history.

    ``divergence`` (nats per data dimension, None: off) stops training when the running
    loss per point exceeds it times the data's dimension, which no pixel likelihood of a
    working model reaches.
    """

    def __init__(self, model, guide, loss: ELBO, optimizer: torch.optim.Optimizer, *,
                 seed: int | None, clip_norm: float | None, progress: bool,
                 eval_loss: ELBO | None = None, eval_batch_size: int = 1000,
                 train_eval_points: int = 0, fast: bool | str = False,
                 lr_schedule=None, beta=None, pair: Pair | None = None,
                 divergence: float | None = None):
        self.pair = pair or module_pair(model, guide)
        self.model, self.guide = self.pair.model, self.pair.guide
        self.loss, self.optimizer = loss, optimizer
        self.beta_schedule = beta if callable(beta) else None
        # objectives that change with training progress (capacity annealing) are told it
        self.progress_hook = getattr(loss, "set_progress", None)
        self.beta = None if beta is None or beta == 1 else BetaMessenger(torch.tensor(
            float(beta(0.0) if callable(beta) else beta), device=device_of(model, guide)))
        self.fast = FastPath(loss, self.model, self.guide, fast,
                             live=[] if self.beta is None else [(self.beta, "beta")],
                             refusal=self.pair.capture_refusal())
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.seed, self.clip_norm, self.progress = seed, clip_norm, progress
        self.eval_loss, self.eval_batch_size = eval_loss, eval_batch_size
        self.train_eval_points, self.divergence = train_eval_points, divergence
        self.lr_schedule = lr_schedule
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        observed = self.pair.sites is not None and not self.pair.sites.latent
        self.history = History(objective_name=objective_name(loss, None if self.beta is None
                                                              else beta, observed),
                               score_name="log-likelihood" if observed else "ELBO")
        self.best_state: dict[str, Any] | None = None  # the pair at the best epoch (copies)

    @contextlib.contextmanager
    def handled(self):
        """The context a training step runs in: the pair's plates as written (one asked to
        subsample more points than a short batch has takes them all,
        :mod:`inference.plates`) and the β handler, if any."""
        with whole_plates(), contextlib.nullcontext() if self.beta is None else self.beta:
            yield

    def step(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """One gradient step; returns the batch loss as a device tensor (no host sync)."""
        with self.handled():
            return self._step(x, y)

    def _step(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if self.fast.active:
            value = self.fast.step(x, y)
        elif hasattr(self.loss, "differentiable_loss"):
            loss = self.loss.differentiable_loss(self.model, self.guide, x, y)
            loss.backward()
            value = loss.detach()
        else:  # objectives such as RenyiELBO only offer loss_and_grads
            value = torch.as_tensor(self.loss.loss_and_grads(self.model, self.guide, x, y))
        if self.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.after_step()
        return value

    def after_step(self) -> None:
        """An objective that keeps state between steps (the VQ-VAE's codebook averages)
        updates it after each optimizer step, through its ``after_step()``."""
        hook = getattr(self.loss, "after_step", None)
        if hook is not None:
            hook()

    def _check_loss(self, running: float, dims: int, epoch: int, step: int) -> None:
        if not math.isfinite(running):
            raise TrainingDiverged(f"the loss became {running} in epoch {epoch} before step {step}")
        if self.divergence is not None and abs(running) > self.divergence * dims:
            raise TrainingDiverged(
                f"the loss reached {running:.4g} nats per data point in epoch {epoch} before "
                f"step {step}, beyond {self.divergence:g} nats per dimension of the data "
                f"(x{dims}), which no working likelihood reaches")

    def train_epoch(self, data, epoch: int, epochs: int, batch_size: int) -> tuple[float, int]:
        """The training objective's mean per data point (to maximize), and steps taken."""
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
                if self.progress_hook is not None:
                    self.progress_hook(epoch - 1 + i / n_steps)
                value = self.step(x, y).to(torch.float64)
                total = value if total is None else total + value
                seen += len(x)
                if time.perf_counter() - last_read >= READ_EVERY_S or i + 1 == n_steps:
                    last_read = time.perf_counter()
                    running = total.item() / seen  # the one host sync per READ_EVERY_S
                    self._check_loss(running, x[0].numel(), epoch, i + 1)
                    bar.set_postfix(objective=f"{-running:.2f}", refresh=False)
                bar.update()
        return -total.item() / seen, n_steps

    def train_points(self, train) -> TensorData | None:
        """The training points scored, before training (the divergence check's baseline
        without validation data) and after every epoch: the same random, label-stratified
        ``train_eval_points`` each time (all of them when there are fewer; None when
        ``train_eval_points`` is 0 or the data is not a :class:`TensorData`)."""
        if not self.train_eval_points or not isinstance(train, TensorData):
            return None
        if self.train_eval_points >= len(train):
            return train
        cached = getattr(self, "_train_eval", None)
        if cached is None or cached[0] is not train:
            self._train_eval = (train, train.subset(self.train_eval_points, seed=0))
        return self._train_eval[1]

    def score(self, data) -> dict[str, float]:
        """ELBO, reconstruction and KL per point of ``data`` (the ELBO by ``eval_loss`` if
        one was given)."""
        terms = elbo_terms(self.model, self.guide, data, batch_size=self.eval_batch_size)
        if self.eval_loss is not None:
            terms["elbo"] = evaluate_elbo(self.model, self.guide, data, loss=self.eval_loss,
                                          batch_size=self.eval_batch_size)
        return terms

    def final_score(self, data) -> dict[str, float]:
        """The scores of the test data, once, at the end."""
        return self.score(data)

    def initial_score(self, data) -> float:
        """The ELBO of ``data`` before training, without shifting the random stream."""
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            return self.score(data)["elbo"]

    def run_epoch(self, train, valid, epoch: int, epochs: int,
                  batch_size: int) -> dict[str, Any]:
        """Train one epoch, score it, and append the epoch's record."""
        start = time.perf_counter()
        if self.lr_schedule is not None:
            for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
                group["lr"] = base * self.lr_schedule(epoch)
        objective, steps = self.train_epoch(train, epoch, epochs, batch_size)
        record: dict[str, Any] = {"epoch": epoch, "objective": objective}
        extra = getattr(self.loss, "epoch_metrics", None)  # e.g. a codebook's usage
        if extra is not None:
            record.update(extra())
        record.update(self.epoch_scores(train, valid))
        record.update(seconds=time.perf_counter() - start, steps=steps,
                      lr=self.optimizer.param_groups[0]["lr"])
        if self.beta is not None:
            record["beta"] = float(self.beta.beta)
        self.history.records.append(record)
        return record

    def epoch_scores(self, train, valid) -> dict[str, float]:
        """``train_*`` scores of :meth:`train_points` and ``valid_*`` of ``valid``."""
        record = {}
        for which, data in (("train", self.train_points(train)), ("valid", valid)):
            if data is not None:
                scores = self.score(data)
                record.update({f"{which}_{k}": scores[k] for k in SCORES})
        return record

    def check_scores(self, record: dict[str, Any]) -> None:
        """Stop a run whose held-out ELBO is NaN, or (training on the plain ELBO) below the
        one the pair scored before training."""
        which = "valid" if record.get("valid_elbo") is not None else "train"
        value, start = record.get(f"{which}_elbo"), self.history.initial_elbo
        if self.divergence is None or value is None:
            return
        if not math.isfinite(value):
            raise TrainingDiverged(f"the {which} ELBO became {value} after epoch "
                                   f"{record['epoch']}")
        if self.beta is None and start is not None and value < start:
            raise TrainingDiverged(f"the {which} ELBO fell to {value:.4g} after epoch "
                                   f"{record['epoch']}, below the {start:.2f} the pair scored "
                                   f"before training")

    def remember_best(self) -> None:
        """Keep a copy of the pair as it is now, the best epoch so far."""
        self.best_state = {role: {n: t.detach().clone() for n, t in part.items()}
                           for role, part in self.pair.state_dict().items()}

    def restore_best(self) -> None:
        if self.best_state is not None:
            self.pair.load_state_dict(self.best_state)

    def state(self, config: dict | None) -> dict[str, Any]:
        return {"format": 2, "epoch": len(self.history), **self.pair.state_dict(),
                "optimizer": self.optimizer.state_dict(), "history": self.history.records,
                "run": self.history.summary(), "rng": _rng_state(), "config": config or {}}

    def restore(self, state: dict[str, Any], path: Path) -> None:
        try:
            self.pair.load_state_dict(state)
            self.optimizer.load_state_dict(state["optimizer"])
        except (KeyError, RuntimeError, ValueError) as e:
            first = str(e).splitlines()[0]
            raise CheckpointError(f"checkpoint {path} does not fit this model and guide "
                                  f"({first}); resume with the configuration that wrote it") from e
        run = state.get("run", {})
        self.history = History(list(state["history"]), self.history.fast_path,
                               self.history.objective_name, run.get("best_epoch"),
                               run.get("stopped_early", False), run.get("initial_elbo"),
                               score_name=self.history.score_name)
        _set_rng_state(state["rng"])

    def resume(self, path: Path) -> None:
        """Continue from the checkpoint at ``path`` (and its ``best.pt``), if one is there."""
        if path.exists():
            self.restore(load_checkpoint(path), path)
        best = path.with_name("best.pt")
        if self.history.best_epoch is not None and best.exists():
            state = load_checkpoint(best)
            self.best_state = {role: state[role] for role in ("model", "guide", "params")}

    def best_checkpoint(self, config: dict | None) -> dict[str, Any]:
        """``best.pt``: the pair at the best epoch, laid out as a checkpoint (no optimizer)."""
        epoch = self.history.best_epoch
        return {"format": 2, "epoch": epoch, **self.best_state, "run": self.history.summary(),
                "history": self.history.records[:epoch], "config": config or {}}
