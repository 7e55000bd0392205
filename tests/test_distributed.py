"""Data-parallel training and evaluation: 2 gloo ranks against one process, a killed rank."""

import json
import os
import re
import signal
import subprocess
import sys
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
from inference import TensorData, fit, iw_log_likelihood, load_checkpoint
from inference import distributed as D
from inference.marginal import importance_sample
from inference.train import parameters
from models import make_model

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"z_dim": 4, "hidden": (32,)}
N, BATCH, EPOCHS, LR, SEED = 49, 16, 2, 1e-3, 5  # 4 batches per epoch, the last of 1 point
EVAL = {"num_samples": 32, "batch_size": 5, "seed": 3, "fast": False}  # 23 points: 5 batches


def small_pair(seed=0):
    torch.manual_seed(seed)
    return make_model("bernoulli_mlp", **SMALL), make_guide("gaussian_mlp", **SMALL)


def data():
    g = torch.Generator().manual_seed(1)
    return torch.bernoulli(torch.full((N, 784), 0.3), generator=g)


def flat(*modules):
    return torch.cat([p.detach().flatten() for m in modules for p in m.parameters()])


def sgd(params):  # plain SGD: Adam would hide a wrong gradient scale (it is scale-free)
    return torch.optim.SGD(params, lr=LR)


def _rank_main(rank, world, folder):
    """One rank: fit, then score 23 points with the distributed estimator."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank,
                            world_size=world, timeout=timedelta(seconds=60))
    try:
        model, guide = small_pair()
        # no validation data: rank 0 scores a training subset before training and after
        # every epoch, the same points each time, and every rank takes part in the baseline
        history = fit(model, guide, data(), epochs=EPOCHS, batch_size=BATCH, seed=SEED,
                      optimizer=sgd, progress=False, train_eval_points=20)
        eval_model, eval_guide = small_pair(seed=1)
        log_px = D.iw_log_likelihood(eval_model, eval_guide, data()[:23], **EVAL)
        s = D.importance_sample(eval_model, eval_guide, data()[:23], return_log_weights=True,
                                **EVAL)
        torch.save({"params": flat(model, guide), "objective": history.objective,
                    "fast_path": history.fast_path, "initial": history.initial_elbo,
                    "train_elbo": history.train_elbo, "log_px": log_px, "log_w": s.log_weights,
                    "z": s.latent_means["z"], "ess": s.ess},
                   f"{folder}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def reference(world, scale=1.0):
    """One process, the same global batches, each rank's slice drawn from that rank's
    generator; the gradient of the sum of the slices' losses (times ``scale``)."""
    model, guide = small_pair()
    x, opt = data(), sgd(parameters(model, guide))
    elbos = []
    for epoch in range(1, EPOCHS + 1):
        states = []
        for r in range(world):
            torch.manual_seed(D.rank_seed(SEED, epoch, r))
            states.append(torch.get_rng_state())
        order = torch.randperm(N, generator=torch.Generator().manual_seed(
            1_000_003 * SEED + epoch))
        total = 0.0
        for start in range(0, N, BATCH):
            batch, loss = order[start:start + BATCH], 0.0
            for r in range(world):
                lo, hi = D.shard_bounds(len(batch), r, world)
                torch.set_rng_state(states[r])
                # a rank with an empty slice draws for one row it then weights by zero
                rows, weight = (batch[lo:hi], 1.0) if hi > lo else (batch[:1], 0.0)
                with pyro.validation_enabled(False):
                    loss = loss + weight * Trace_ELBO().differentiable_loss(model, guide, x[rows])
                states[r] = torch.get_rng_state()
            (loss * scale).backward()
            opt.step()
            opt.zero_grad()
            total += loss.item()
        elbos.append(-total / N)
    return flat(model, guide), elbos


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT),
                                                             os.environ.get("PYTHONPATH")]))
    start = time.perf_counter()
    mp.spawn(_rank_main, args=(2, str(folder)), nprocs=2, join=True)
    print(f"\n  2 gloo ranks: {time.perf_counter() - start:.1f} s")
    return [torch.load(folder / f"rank{r}.pt") for r in range(2)]


def test_two_gloo_ranks_train_like_one_process_on_the_same_global_batches(two_ranks, capsys):
    first, second = two_ranks
    assert torch.equal(first["params"], second["params"])  # identical replicas
    assert first["objective"] == second["objective"]
    expected, elbos = reference(2)
    diff = (first["params"] - expected).abs().max().item()
    moved = (expected - flat(*small_pair())).abs().max().item()
    wrong = (first["params"] - reference(2, scale=0.5)[0]).abs().max().item()
    with capsys.disabled():
        print(f"  max |DDP - one process| = {diff:.2e} (training moved parameters by up to "
              f"{moved:.2e}; with DDP's mean unscaled the gap would be {wrong:.2e})")
    torch.testing.assert_close(first["params"], expected, rtol=1e-5, atol=1e-6)
    assert moved > 1e-2 and wrong > 1e3 * max(diff, 1e-7)
    assert first["objective"] == pytest.approx(elbos, rel=1e-5)
    assert first["fast_path"].startswith("off (under DistributedDataParallel")
    # the baseline and the epochs' training scores: rank 0's, sent to every rank
    assert first["initial"] == second["initial"] and first["initial"] < 0
    assert first["train_elbo"] == second["train_elbo"] and None not in first["train_elbo"]


@pytest.fixture
def one_thread():  # as the ranks ran: two threads sum the decoder's matmuls in another order
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_distributed_evaluation_gathers_the_single_process_estimates(two_ranks, one_thread,
                                                                     capsys):
    model, guide = small_pair(seed=1)
    single = iw_log_likelihood(model, guide, data()[:23], **EVAL)
    whole = importance_sample(model, guide, data()[:23], return_log_weights=True, **EVAL)
    for rank in two_ranks:
        assert rank["log_px"].shape == (23,)
        diff = (rank["log_px"] - single).abs().max().item()
        assert torch.equal(rank["log_px"], single)
        # (K, N), (N, z_dim), (N,): the other per-point results, gathered in order
        for key, got in (("log_w", whole.log_weights), ("z", whole.latent_means["z"]),
                         ("ess", whole.ess)):
            assert torch.equal(rank[key], got), key
    with capsys.disabled():
        print(f"  max |distributed - single-process log p(x)| = {diff:.2e} nats")
    other = iw_log_likelihood(model, guide, data()[:23], **{**EVAL, "seed": 4})
    assert (other - single).abs().max() > 1e-2  # the seed matters: the equality is not vacuous
    # the same per-point estimates, whatever the split into runs of whole batches
    tail = iw_log_likelihood(model, guide, data()[10:23], **EVAL)  # seeded from index 0
    assert not torch.allclose(tail, single[10:])
    tail = importance_sample(model, guide, data()[10:23], first_index=10, **EVAL)
    assert torch.equal(tail.log_likelihood, single[10:])


def test_slices_of_every_rank_make_up_the_single_process_batches():
    x = TensorData(torch.arange(11.0)[:, None])
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    whole = [b[0].flatten().tolist() for b in x.batches(4, shuffle=True, generator=g())]
    shards = [D.ShardedData(x, r, 3) for r in range(3)]
    slices = [[b[0].flatten().tolist() for b in s.batches(4, shuffle=True, generator=g())]
              for s in shards]
    # the last batch has 3 points: one per rank; a batch of 4 splits 1, 1, 2
    assert [sum((s[i] for s in slices), []) for i in range(3)] == whole
    assert [s.rows for s in shards] == [3, 3, 5] and [s.served(4) for s in shards] == [3, 3, 5]
    last = list(D.ShardedData(TensorData(torch.ones(5, 1)), 0, 2).batches(4))
    assert len(last) == 2  # rank 0's slice of the 1-point last batch is empty: padded


def _pid_of_rank(launcher: int, rank: int) -> int | None:
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if f"PPid:\t{launcher}\n" not in status.read_text():
                continue
            env = (status.parent / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env and b"TORCHELASTIC_RUN_ID" in b"".join(env):
            return int(status.parent.name)
    return None


def torchrun(nproc, *args):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={nproc}", "--monitor-interval=0.5", "-m", "inference.cli",
            "--hidden", "8", "--z-dim", "2", "--quiet", "--no-figures", *args]


def test_killing_a_rank_fails_fast_and_resume_continues(tmp_path, capsys):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           D.TIMEOUT_ENV: "30", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(torchrun(2, "--epochs", "1000", "--out", str(out)), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    victim = _pid_of_rank(proc.pid, 1)
    assert victim is not None, proc.communicate(timeout=60)[0]
    os.kill(victim, signal.SIGKILL)
    killed = time.perf_counter()
    log = proc.communicate(timeout=120)[0]
    took = time.perf_counter() - killed
    with capsys.disabled():
        print(f"\n  rank 1 SIGKILLed: torchrun exited {proc.returncode} after {took:.1f} s")
        print("\n".join("    " + line for line in log.splitlines()
                        if "Signal" in line or "vae-train: error" in line))
    assert proc.returncode != 0 and took < 60
    assert "Signal 9 (SIGKILL) received by PID" in log
    assert log.count("distributed: 2 processes (gloo), rank 0 on cpu") == 1  # rank 0 logs
    epoch = load_checkpoint(out / "checkpoint.pt")["epoch"]
    done = subprocess.run(torchrun(2, "--out", str(out), "--resume", "--epochs",
                                   str(epoch + 1)),
                          env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(f"epoch {epoch + 1}: train ELBO") == 1
    assert f"epoch {epoch}: train" not in done.stdout  # continued, not restarted
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == epoch + 1
    assert json.loads((out / "metrics.json").read_text())["epochs"] == epoch + 1


def test_torchrun_train_then_evaluate_scores_on_every_rank(tmp_path):
    """vae-train --eval-samples under torchrun: every rank scores its share of the test points
    after training, and rank 0 writes what one process would."""
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", D.TIMEOUT_ENV: "60"}
    done = subprocess.run(torchrun(2, "--epochs", "1", "--train-limit", "500", "--valid", "100",
                                   "--no-tensorboard", "--eval-samples", "4", "--out", str(out)),
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((out / "eval-test-K4.json").read_text())
    assert summary["processes"] == 2 and summary["data"]["n"] == 2000
    assert len(re.findall(rf"NLL +{summary['nll']:.2f} nats", done.stdout)) == 1  # rank 0
    points = load_checkpoint(out / "eval-test-K4-points.pt")
    assert points["nll"].shape == (2000,) and torch.isfinite(points["nll"]).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_one_gpu_torchrun_trains_with_nccl(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(torchrun(1, "--epochs", "1", "--device", "cuda", "--out",
                                   str(tmp_path / "run")),
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "distributed: 1 processes (nccl), rank 0 on cuda:0" in done.stdout
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["epoch"] == 1
