"""Beyond one process group: two torchrun "nodes" on localhost (c10d and static rendezvous),
a lost node, resumes with a changed number of processes, and vae-eval sharded over ranks."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from inference import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["-m", "inference.cli", "--hidden", "8", "--z-dim", "2", "--quiet", "--no-figures",
         "--no-tensorboard", "--threads", "1", "--train-limit", "2000", "--valid", "200"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
       "VAE_LAB_DIST_TIMEOUT": "30", "PYTHONUNBUFFERED": "1"}
RUN = [sys.executable, "-m", "torch.distributed.run", "--monitor-interval=0.5"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node(rank: int, form: str, port: int, *args) -> list[str]:
    """One torchrun "node" of two, one process each, on this machine."""
    if form == "c10d":
        rdzv = ["--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=lab"]
    else:
        rdzv = [f"--node-rank={rank}", "--master-addr=127.0.0.1", f"--master-port={port}"]
    return [*RUN, "--nnodes=2", "--nproc-per-node=1", *rdzv, *TRAIN, *args]


def single(nproc: int, *args) -> list[str]:
    return ([*RUN, "--standalone", f"--nproc-per-node={nproc}", *TRAIN, *args] if nproc > 1
            else [sys.executable, *TRAIN, *args])


def run(cmd) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def two_nodes(form: str, *args, wait: bool = True):
    port = free_port()
    procs = [subprocess.Popen(node(r, form, port, *args), env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
             for r in (0, 1)]
    if not wait:
        return procs
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    return logs


def descendants(pid: int) -> list[int]:
    """Every process started under ``pid`` (torchrun starts its ranks in new sessions)."""
    children = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            ppid = int(next(line for line in status.read_text().splitlines()
                            if line.startswith("PPid:")).split()[1])
        except (OSError, StopIteration, ValueError):
            continue
        children.setdefault(ppid, []).append(int(status.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def params(out: Path) -> torch.Tensor:
    state = load_checkpoint(out / "checkpoint.pt")
    return torch.cat([v.flatten() for role in ("model", "guide") for v in state[role].values()])


@pytest.fixture(scope="module")
def one_node_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    run(single(2, "--epochs", "2", "--out", str(out)))
    return params(out)


@pytest.mark.parametrize("form", ["static", pytest.param("c10d", marks=pytest.mark.slow)])
def test_two_nodes_train_like_one_node_and_write_one_folder(form, one_node_reference, tmp_path,
                                                           capsys):
    out = tmp_path / "run"
    start = time.perf_counter()
    logs = two_nodes(form, "--epochs", "2", "--out", str(out))
    took = time.perf_counter() - start
    diff = (params(out) - one_node_reference).abs().max().item()
    with capsys.disabled():
        print(f"\n  two {form} nodes: {took:.1f} s, max |two nodes - one node| = {diff:.1e}")
    assert diff == 0  # the same global batches and per-rank draws, bit for bit
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # one run folder
    assert sum(log.count("final test ELBO") for log in logs) == 1  # rank 0 alone reports
    assert sum(log.count("distributed: 2 processes (gloo)") for log in logs) == 1


@pytest.mark.slow
def test_losing_a_node_ends_the_other_in_one_line_and_both_resume(tmp_path, capsys):
    out = tmp_path / "run"
    procs = two_nodes("static", "--epochs", "1000", "--out", str(out), wait=False)
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    for pid in [procs[1].pid, *descendants(procs[1].pid)]:  # node 1: its agent and rank
        os.kill(pid, signal.SIGKILL)
    killed = time.perf_counter()
    log = procs[0].communicate(timeout=120)[0]
    took = time.perf_counter() - killed
    procs[1].communicate(timeout=30)
    error = [line for line in log.splitlines() if "vae-train: error" in line]
    with capsys.disabled():
        print(f"\n  node 1 killed: node 0 exited {procs[0].returncode} after {took:.1f} s")
        print("\n".join("    " + line.strip() for line in error))
    assert procs[0].returncode != 0 and took < 60
    assert len(error) == 1 and "another process of the run died or stopped answering" in error[0]
    epoch = load_checkpoint(out / "checkpoint.pt")["epoch"]
    logs = two_nodes("static", "--epochs", str(epoch + 1), "--resume", "--out", str(out))
    assert sum(log.count(f"epoch {epoch + 1}: train ELBO") for log in logs) == 1
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == epoch + 1


@pytest.mark.slow
@pytest.mark.parametrize("before,after", [(2, 1), (1, 2)])
def test_resuming_with_another_number_of_processes(before, after, tmp_path):
    """The finished epochs, the epoch count and the optimizer's state carry over; the random
    draws of the new epochs cannot (each rank draws from its own seed)."""
    out = tmp_path / "run"
    run(single(before, "--epochs", "1", "--out", str(out)))
    first = load_checkpoint(out / "checkpoint.pt")
    done = run(single(after, "--epochs", "2", "--resume", "--out", str(out)))
    assert "epoch 1:" not in done.stdout and done.stdout.count("epoch 2:") == 1
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["epoch"] == 2 and state["history"][0] == first["history"][0]
    steps = first["history"][0]["steps"]
    assert state["history"][1]["steps"] == steps  # the same global batches per epoch
    for group in state["optimizer"]["state"].values():  # Adam's count runs on: not reset
        assert int(group["step"]) == 2 * steps
    assert len(first["optimizer"]["state"]) == len(state["optimizer"]["state"])


def test_vae_eval_under_torchrun_shares_the_points_and_equals_one_process(tmp_path):
    out = tmp_path / "run"
    run(single(1, "--epochs", "1", "--out", str(out)))
    vae_eval = shutil.which("vae-eval", path=str(Path(sys.executable).parent))
    args = [str(out), "--num-samples", "32", "--limit", "301", "--quiet", "--threads", "1"]
    one = subprocess.run([sys.executable, vae_eval, *args], env=ENV, capture_output=True,
                         text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    stem = out / "eval-test-K32-random301"
    first = (json.loads(stem.with_suffix(".json").read_text()),
             load_checkpoint(f"{stem}-points.pt"))
    shared = subprocess.run([*RUN, "--standalone", "--nproc-per-node=2", vae_eval, *args],
                            env=ENV, capture_output=True, text=True, timeout=300)
    assert shared.returncode == 0, shared.stdout + shared.stderr
    assert shared.stdout.count("NLL") == 1  # rank 0 alone prints and writes
    assert "distributed: 2 processes (gloo)" in shared.stdout
    second = (json.loads(stem.with_suffix(".json").read_text()),
              load_checkpoint(f"{stem}-points.pt"))
    for key in ("nll", "nll_mc_stderr", "khat"):
        assert torch.equal(first[1][key], second[1][key]), key  # per point, bit for bit
    assert first[1]["nll"].shape == (301,) and second[0]["processes"] == 2
    for key in ("nll", "elbo", "kl", "ess_median", "share_khat_above_0.7"):
        assert first[0][key] == second[0][key], key
