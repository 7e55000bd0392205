"""Data-parallel SVI and evaluation over several processes and GPUs with torch.distributed.

Under torchrun every process (rank) holds the whole model, guide and data, and :func:`fit
<inference.fit>` joins the process group (NCCL for CUDA, gloo for the CPU). The scheme is
PyTorch's DistributedDataParallel (Li et al. 2020, "PyTorch Distributed: Experiences on
Accelerating Data Parallel Training", VLDB). Every rank draws the same permutation per epoch,
cuts it into the same global batches of B points and takes its contiguous slice of each, so
the slices make up the batch one process would see. DDP averages the ranks' gradients of the
loss module (Pyro's ``ELBOModule``); each rank's loss, the sum over its slice, is multiplied
by the world size N (the subsample scale B / (B/N) of an evenly split batch), so the update
is the gradient of the whole batch's loss. N rather than B / B_r stays exact for an uneven
last batch, and it scales the loss rather than the sites (``poutine.scale``) because the
IWAE-type objectives are not linear in a site's scale. Rank r reseeds its draws each epoch
from (seed, epoch, r) (:func:`rank_seed`). Rank 0 alone scores, checkpoints and logs, and
sends its epoch record and, on resume, its checkpoint to the others. A dead or silent peer
raises :class:`ReplicaFailed` within the collective timeout (:data:`TIMEOUT_ENV`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pyro
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils._pytree import tree_map

from inference import marginal
from inference.data import Batch, TensorData, as_data
from inference.marginal import ImportanceSummary, default_sizes
from inference.pair import PairLoss
from inference.programs import device_of, program
from inference.train import Trainer

TIMEOUT_ENV = "VAE_LAB_DIST_TIMEOUT"  # seconds a collective may wait for the other ranks
DEFAULT_TIMEOUT_S = 600.0


class ReplicaFailed(RuntimeError):
    """Another process of a distributed run died, or a collective timed out."""


def launched() -> bool:
    """Whether torchrun (or another launcher that sets RANK and WORLD_SIZE) started us."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def rank() -> int:
    """This process's rank: the process group's, else torchrun's RANK, else 0."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", 0))


def world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", 1))


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous slice [lo, hi) of n items; sizes differ by at most one.

    >>> [shard_bounds(5, r, 2) for r in range(2)]
    [(0, 2), (2, 5)]
    """
    return n * rank // world, n * (rank + 1) // world


def rank_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of rank ``rank``'s draws in ``epoch`` (a numpy-compatible 32-bit value)."""
    return ((seed * 1_000_003 + epoch) * 65_537 + rank) % 2**32


def local_device(device: torch.device) -> torch.device:
    """``cuda`` without an index becomes torchrun's ``cuda:LOCAL_RANK``: one GPU per rank."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


@dataclass(frozen=True)
class Replicas:
    """The process group a run trains in: this process's rank, the world size, its device."""

    rank: int
    world: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def join(cls, device: torch.device) -> Replicas | None:
        """The current process group, initialized from torchrun's environment if needed
        (NCCL when ``device`` is CUDA, else gloo); None in a single, unlaunched process."""
        if not dist.is_available() or not (dist.is_initialized() or launched()):
            return None
        device = local_device(device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            timeout = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                    timeout=timedelta(seconds=timeout))
        return cls(dist.get_rank(), dist.get_world_size(), device, dist.get_backend())

    def describe(self) -> str:
        return (f"distributed: {self.world} processes ({self.backend}), rank {self.rank} "
                f"on {self.device}")

    def trainer(self, *args, **kwargs) -> DistributedTrainer:
        return DistributedTrainer(*args, replicas=self, **kwargs)


def close() -> None:
    """Leave the process group, if this process is in one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _peer_failure(e: BaseException) -> bool:
    text = str(e).lower()
    return isinstance(e, dist.DistError) or any(
        word in text for word in ("gloo", "nccl", "connection", "timed out", "timeout"))


@contextmanager
def peers(what: str) -> Iterator[None]:
    """Turn a collective's failure into :class:`ReplicaFailed`, saying what to do."""
    try:
        yield
    except RuntimeError as e:
        if isinstance(e, ReplicaFailed) or not _peer_failure(e):
            raise
        text = str(e).strip()
        first = text.splitlines()[0].split(". ")[0][:200] if text else type(e).__name__
        raise ReplicaFailed(
            f"rank {rank()} of {world_size()}: another process of the run died or stopped "
            f"answering during {what} ({first}); finished epochs are in the last checkpoint: "
            f"relaunch the same command with --resume (fit(..., resume=True))") from e


class ShardedData:
    """This rank's contiguous slice of every global batch of a :class:`TensorData`.

    A slice that is empty (a last batch with fewer points than ranks) is served as one row
    with ``padding`` set; the trainer weights its loss by zero, so DDP's collective still runs.
    """

    def __init__(self, data: Any, rank: int, world: int):
        if not isinstance(data, TensorData):
            raise TypeError(f"distributed training shards TensorData, got {type(data).__name__};"
                            f" load the dataset into tensors (inference.TensorData) first")
        self.data, self.rank, self.world = data, rank, world
        self.padding, self.rows = False, 0

    def __len__(self) -> int:
        return len(self.data)  # the global size: each rank takes as many steps as one process

    def batches(self, batch_size: int, *, shuffle: bool = False,
                generator: torch.Generator | None = None) -> Iterator[Batch]:
        n = len(self.data)
        order = (torch.randperm(n, generator=generator) if shuffle else torch.arange(n))
        order = order.to(self.data.x.device)  # the same permutation TensorData.batches draws
        self.rows = 0
        for start in range(0, n, batch_size):
            batch = order[start:start + batch_size]  # (B,) global batch
            lo, hi = shard_bounds(len(batch), self.rank, self.world)
            self.padding, self.rows = hi == lo, self.rows + hi - lo
            yield self.data.serve(batch[:1] if self.padding else batch[lo:hi])

    def served(self, batch_size: int) -> int:
        """Rows one pass serves to this rank, padding rows included."""
        n = len(self.data)
        return sum(max(1, hi - lo) for lo, hi in (
            shard_bounds(min(batch_size, n - s), self.rank, self.world)
            for s in range(0, n, batch_size)))


class _Off:
    """The fast path's place under DDP: off, with the reason ``History.fast_path`` reports."""

    active = False
    reason = ("off (under DistributedDataParallel: the step runs Pyro's objective inside DDP's "
              "forward, whose gradient hooks a captured graph is not checked against)")

    def verify(self, x, y) -> bool:
        return False


class DistributedTrainer(Trainer):
    """:class:`~inference.train.Trainer` whose step runs the loss module under DDP."""

    def __init__(self, model, guide, loss, optimizer, *, replicas: Replicas, **kwargs):
        if not hasattr(loss, "differentiable_loss"):
            raise ValueError(f"{type(loss).__name__} has no differentiable_loss, which "
                             f"DistributedDataParallel needs; use Trace_ELBO, "
                             f"TraceMeanField_ELBO or inference.objectives (IWAE, DReG, STL)")
        super().__init__(model, guide, loss, optimizer, **{**kwargs, "fast": False})
        self.fast, self.replicas, self.shard = _Off(), replicas, None
        if not replicas.is_main:
            self.train_eval_points = 0  # rank 0 scores the epoch
        ids = [replicas.device.index] if replicas.device.type == "cuda" else None
        with peers("the start of training"):  # DDP broadcasts rank 0's parameters
            self.ddp = DistributedDataParallel(PairLoss(loss, self.pair), device_ids=ids)

    def _step(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        value = self.ddp(x, y)  # this rank's slice: the loss summed over its points
        weight = 0.0 if self.shard is not None and self.shard.padding else self.replicas.world
        (value * weight).backward()  # DDP averages: the mean of N x slice sums = batch sum
        if self.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return value.detach() * (weight > 0)

    def train_epoch(self, data, epoch: int, epochs: int, batch_size: int) -> tuple[float, int]:
        """This rank's slices with its own draws; returns the global batch's mean ELBO."""
        pyro.set_rng_seed(rank_seed(self.seed or 0, epoch, self.replicas.rank))
        self.shard = ShardedData(data, self.replicas.rank, self.replicas.world)
        elbo, steps = super().train_epoch(self.shard, epoch, epochs, batch_size)
        sums = torch.tensor([elbo * self.shard.served(batch_size), self.shard.rows],
                            dtype=torch.float64, device=self.replicas.device)
        dist.all_reduce(sums)
        return (sums[0] / sums[1]).item(), steps

    def run_epoch(self, train, test, epoch: int, epochs: int,
                  batch_size: int) -> dict[str, Any]:
        with peers(f"epoch {epoch}"):
            record = super().run_epoch(train, test if self.replicas.is_main else None, epoch,
                                       epochs, batch_size)
            shared = [record]
            dist.broadcast_object_list(shared, src=0)
        self.history.records[-1] = shared[0]
        return shared[0]

    def resume(self, path) -> None:
        """Rank 0 reads the checkpoint (if there is one) and sends it to every rank."""
        from inference.checkpoint import load_checkpoint

        state = [load_checkpoint(path) if self.replicas.is_main and path.exists() else None]
        with peers("loading the checkpoint"):
            dist.broadcast_object_list(state, src=0)
        if state[0] is not None:
            self.restore(state[0], path)


def _rows(data: Any, lo: int, hi: int) -> TensorData:
    if not isinstance(data, TensorData):
        raise TypeError(f"distributed evaluation splits TensorData, got {type(data).__name__}; "
                        f"load the dataset into tensors (inference.TensorData) first")
    return data.take(hi - lo, start=lo)


def _joined(parts: list[ImportanceSummary], device: torch.device) -> ImportanceSummary:
    """The ranks' summaries as one, points in rank order (``log_weights`` is (K, N))."""
    def join(key, values):
        if isinstance(values[0], dict):
            return {k: join(k, [v[k] for v in values]) for k in values[0]}
        if torch.is_tensor(values[0]):
            return torch.cat(values, 1 if key == "log_weights" else 0).to(device)
        return "; ".join(dict.fromkeys(values)) if key == "fast_path" else values[0]

    return ImportanceSummary(**{k: join(k, [vars(p)[k] for p in parts]) for k in vars(parts[0])})


def importance_sample(model, guide, x, *, y=None, num_samples: int = 5000,
                      chunk_size: int | None = None, batch_size: int | None = None,
                      seed: int = 0, return_log_weights: bool = False,
                      fast: bool | str = "auto") -> ImportanceSummary:
    """:func:`inference.marginal.importance_sample` over ``x`` split across the ranks.

    The points are cut into batches sized for the whole set (as one process would), each
    rank takes a contiguous run of whole batches, and every batch reseeds the generator
    from ``seed`` and its first point's index. So the per-point results equal
    ``marginal.importance_sample(..., seed=seed)`` in one process with the same batch and
    chunk sizes; they are gathered to every rank in the original order. Without a process
    group this is that single-process call.
    """
    model, guide = program(model, "model"), program(guide, "guide")
    data = as_data(x if y is None else (x, y))
    device = device_of(model, guide)
    r, w, n = rank(), world_size(), len(data)
    batch, chunk = default_sizes(n, data.head(1)[0][0].numel(), num_samples, batch_size,
                                 chunk_size)
    batches = math.ceil(n / batch)
    lo, hi = (min(n, batch * b) for b in shard_bounds(batches, r, w))
    part = None
    if hi > lo:
        part = marginal.importance_sample(
            model, guide, _rows(data, lo, hi), num_samples=num_samples,
            chunk_size=chunk, batch_size=batch, return_log_weights=return_log_weights,
            fast=fast, seed=seed, first_index=lo)
    if w == 1 or not dist.is_initialized():
        return part
    parts: list[ImportanceSummary | None] = [None] * w
    with peers("distributed evaluation"):
        dist.all_gather_object(parts, None if part is None else ImportanceSummary(
            **tree_map(lambda t: t.cpu() if torch.is_tensor(t) else t, vars(part))))
    return _joined([p for p in parts if p is not None], device)


def iw_log_likelihood(model, guide, x, *, y=None, num_samples: int = 5000,
                      chunk_size: int | None = None, batch_size: int | None = None,
                      seed: int = 0, fast: bool | str = "auto") -> torch.Tensor:
    """Per-point log p̂(x) (N,) of :func:`inference.marginal.iw_log_likelihood` (Burda et
    al. 2016), computed on all ranks of the process group; see :func:`importance_sample`."""
    return importance_sample(model, guide, x, y=y, num_samples=num_samples,
                             chunk_size=chunk_size, batch_size=batch_size, seed=seed,
                             fast=fast).log_likelihood
