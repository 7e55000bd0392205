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

from inference.distributed.evaluation import importance_sample, iw_log_likelihood
from inference.distributed.group import (
    DEFAULT_TIMEOUT_S,
    TIMEOUT_ENV,
    ReplicaFailed,
    Replicas,
    barrier,
    close,
    launched,
    local_device,
    peers,
    rank,
    rank_seed,
    shard_bounds,
    world_size,
)
from inference.distributed.training import DistributedTrainer, ShardedData

__all__ = ["DEFAULT_TIMEOUT_S", "TIMEOUT_ENV", "DistributedTrainer", "ReplicaFailed",
           "Replicas", "ShardedData", "barrier", "close", "importance_sample",
           "iw_log_likelihood", "launched", "local_device", "peers", "rank", "rank_seed",
           "shard_bounds", "world_size"]
