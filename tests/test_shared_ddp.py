"""Data-parallel training of a pair that shares a network: the VampPrior model tied to its
IAF guide's encoder, on 2 gloo ranks, against one process on the same global batches (the
protocol of tests/test_distributed.py)."""

import os
import time
from datetime import timedelta
from pathlib import Path

import pyro
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pyro.infer import Trace_ELBO

from guides import make_guide
from inference import distributed as D
from inference import fit
from inference.train import parameters
from models import make_model, tie

ROOT = Path(__file__).resolve().parents[1]
N, BATCH, EPOCHS, LR, SEED = 33, 16, 1, 1e-3, 5  # 3 batches, the last of 1 point


def shared_pair():
    torch.manual_seed(0)
    model = make_model("vamp", z_dim=4, hidden=(32,), pseudo_inputs=8)
    guide = make_guide("iaf", z_dim=4, hidden=(32,), flow_hidden=(16,))
    tie(model, guide)
    return model, guide


def data():
    g = torch.Generator().manual_seed(1)
    return torch.bernoulli(torch.full((N, 784), 0.3), generator=g)


def flat(model, guide):
    return torch.cat([p.detach().flatten() for p in parameters(model, guide)])


def sgd(params):  # Adam would hide a wrong gradient scale
    return torch.optim.SGD(params, lr=LR)


def _rank_main(rank, world, folder):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank,
                            world_size=world, timeout=timedelta(seconds=60))
    try:
        model, guide = shared_pair()
        history = fit(model, guide, data(), epochs=EPOCHS, batch_size=BATCH, seed=SEED,
                      optimizer=sgd, progress=False, train_eval_points=0)
        torch.save({"params": flat(model, guide), "fast_path": history.fast_path},
                   f"{folder}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def one_process(world: int) -> torch.Tensor:
    """The same global batches in one process, each rank's slice drawn from its generator."""
    model, guide = shared_pair()
    x, opt = data(), sgd(parameters(model, guide))
    for epoch in range(1, EPOCHS + 1):
        states = []
        for r in range(world):
            torch.manual_seed(D.rank_seed(SEED, epoch, r))
            states.append(torch.get_rng_state())
        order = torch.randperm(N, generator=torch.Generator().manual_seed(
            1_000_003 * SEED + epoch))
        for start in range(0, N, BATCH):
            batch, loss = order[start:start + BATCH], 0.0
            for r in range(world):
                lo, hi = D.shard_bounds(len(batch), r, world)
                torch.set_rng_state(states[r])
                rows, weight = (batch[lo:hi], 1.0) if hi > lo else (batch[:1], 0.0)
                with pyro.validation_enabled(False):
                    loss = loss + weight * Trace_ELBO().differentiable_loss(model, guide, x[rows])
                states[r] = torch.get_rng_state()
            loss.backward()
            opt.step()
            opt.zero_grad()
    return flat(model, guide)


@pytest.mark.slow
def test_two_ranks_train_the_shared_pair_like_one_process(tmp_path, capsys):
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT),
                                                             os.environ.get("PYTHONPATH")]))
    start = time.perf_counter()
    mp.spawn(_rank_main, args=(2, str(tmp_path)), nprocs=2, join=True)
    first, second = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    expected = one_process(2)
    moved = (expected - flat(*shared_pair())).abs().max().item()
    with capsys.disabled():
        print(f"\n  2 gloo ranks, shared encoder: {time.perf_counter() - start:.1f} s; max |DDP - "
              f"one process| = {(first['params'] - expected).abs().max().item():.2e}")
    assert torch.equal(first["params"], second["params"])
    torch.testing.assert_close(first["params"], expected, rtol=1e-5, atol=1e-6)
    assert moved > 1e-4
    assert first["fast_path"].startswith("off (under DistributedDataParallel")


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
