"""Data-parallel training: every rank trains its slice of each global batch under DDP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyro
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from inference.data import Batch, TensorData
from inference.distributed.group import Replicas, peers, rank_seed, shard_bounds
from inference.pair import PairLoss
from inference.trainer import Trainer


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
    """:class:`~inference.trainer.Trainer` whose step runs the loss module under DDP."""

    def __init__(self, model, guide, loss, optimizer, *, replicas: Replicas, **kwargs):
        if not hasattr(loss, "differentiable_loss"):
            raise ValueError(f"{type(loss).__name__} has no differentiable_loss, which "
                             f"DistributedDataParallel needs; use Trace_ELBO, "
                             f"TraceMeanField_ELBO or inference.objectives (IWAE, DReG, STL)")
        super().__init__(model, guide, loss, optimizer, **{**kwargs, "fast": False})
        self.fast, self.replicas, self.shard = _Off(), replicas, None
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
        self.after_step()
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

    def run_epoch(self, train, valid, epoch: int, epochs: int,
                  batch_size: int) -> dict[str, Any]:
        with peers(f"epoch {epoch}"):
            record = super().run_epoch(train, valid, epoch, epochs, batch_size)
            shared = [record]
            dist.broadcast_object_list(shared, src=0)
        self.history.records[-1] = shared[0]
        return shared[0]

    def epoch_scores(self, train, valid) -> dict[str, float]:
        """Rank 0 scores the epoch (and sends its record); the others wait."""
        return super().epoch_scores(train, valid) if self.replicas.is_main else {}

    def _from_main(self, what: str, compute):
        """``compute()`` on rank 0, its result sent to every rank."""
        shared = [compute() if self.replicas.is_main else None]
        with peers(what):
            dist.broadcast_object_list(shared, src=0)
        return shared[0]

    def initial_score(self, data) -> float:
        return self._from_main("the first score", lambda: super(
            DistributedTrainer, self).initial_score(data))

    def final_score(self, data) -> dict[str, float]:
        return self._from_main("the test score", lambda: super(
            DistributedTrainer, self).final_score(data))

    def resume(self, path) -> None:
        """Rank 0 reads the checkpoint (if there is one) and sends it to every rank."""
        from inference.checkpoint import load_checkpoint

        state = [load_checkpoint(path) if self.replicas.is_main and path.exists() else None]
        with peers("loading the checkpoint"):
            dist.broadcast_object_list(state, src=0)
        if state[0] is not None:
            self.restore(state[0], path)
