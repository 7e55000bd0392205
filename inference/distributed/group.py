"""The process group of a distributed run: who is who, and what a failed peer looks like."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

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


def barrier(what: str) -> None:
    """Wait until every rank of the process group gets here (nothing without a group)."""
    if dist.is_available() and dist.is_initialized():
        with peers(what):
            dist.barrier()


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
