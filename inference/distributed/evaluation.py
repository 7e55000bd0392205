"""Importance sampling split across the ranks: each scores a run of whole batches."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist
from torch.utils._pytree import tree_map

from inference import marginal
from inference.data import TensorData, as_data
from inference.distributed.group import peers, rank, shard_bounds, world_size
from inference.marginal import ImportanceSummary, default_sizes
from inference.programs import device_of, program
from inference.validate import optional, positive_int


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
                      fast: bool | str = "auto", khat: bool = False,
                      progress: bool = False) -> ImportanceSummary:
    """:func:`inference.marginal.importance_sample` over ``x`` split across the ranks.

    The points are cut into batches sized for the whole set (as one process would), each
    rank takes a contiguous run of whole batches, and every batch reseeds the generator
    from ``seed`` and its first point's index. So the per-point results equal
    ``marginal.importance_sample(..., seed=seed)`` in one process with the same batch and
    chunk sizes; they are gathered to every rank in the original order. Without a process
    group this is that single-process call.
    """
    positive_int("num_samples", num_samples)
    optional(positive_int, "chunk_size", chunk_size)
    optional(positive_int, "batch_size", batch_size)
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
            fast=fast, seed=seed, first_index=lo, khat=khat, progress=progress)
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
