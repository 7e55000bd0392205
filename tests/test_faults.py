"""Faults a user meets: every bad number, damaged file and OS fault ends in one line and a
non-zero exit, and no finished work is lost."""

import errno
import os
import random
import shutil
import subprocess
import sys
import time

import pytest
import torch

from inference import DataError, fit, load_checkpoint
from inference import checkpoint as ckpt_module
from inference.checkpoint import CheckpointError, RunInUse, run_lock, save_checkpoint
from inference.cli import eval_main, plot_main, sample_main, train_main

TINY = ["--hidden", "16", "--z-dim", "2", "--quiet", "--no-tensorboard", "--no-figures",
        "--train-limit", "1000", "--valid", "200"]
MAINS = {"vae-train": train_main, "vae-eval": eval_main, "vae-plot": plot_main,
         "vae-sample": sample_main}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished two-epoch run folder (copied per test that damages it)."""
    out = tmp_path_factory.mktemp("runs") / "run"
    assert train_main([*TINY, "--epochs", "2", "--out", str(out)]) == 0
    return out


def fails(argv, command, capsys, status=2) -> str:
    with pytest.raises(SystemExit) as info:
        MAINS[command](argv)
    assert info.value.code == status
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"{command}: error: "), err
    return err


BAD_NUMBERS = [
    ("vae-train", ["--epochs", "0"], "epochs must be a whole number ≥ 1, got 0"),
    ("vae-train", ["--epochs", "-1"], "epochs must be a whole number ≥ 1, got -1"),
    ("vae-train", ["--batch-size", "-5"], "batch_size must be a whole number ≥ 1, got -5"),
    ("vae-train", ["--batch-size", "0"], "batch_size must be a whole number ≥ 1, got 0"),
    ("vae-train", ["--num-particles", "0"], "num_particles must be a whole number ≥ 1"),
    ("vae-train", ["--lr", "nan"], "lr must be a finite number > 0, got nan"),
    ("vae-train", ["--lr", "0"], "lr must be a finite number > 0, got 0.0"),
    ("vae-train", ["--beta", "-1"], "beta must be a finite number ≥ 0"),
    ("vae-train", ["--valid", "10000"], "cannot hold out 10000 of the 10000 training images"),
    ("vae-train", ["--train-limit", "0"], "train_limit must be a whole number ≥ 1"),
    ("vae-train", ["--patience", "0"], "patience must be a whole number ≥ 1"),
    ("vae-train", ["--threads", "0"], "--threads must be a whole number ≥ 1"),
    ("vae-train", ["--eval-samples", "-3"], "--eval-samples must be a whole number ≥ 0"),
    ("vae-train", ["--model", "vae"], "unknown model 'vae'; choose one of"),
]


@pytest.mark.parametrize("command,argv,message", BAD_NUMBERS,
                         ids=[" ".join(a) for _, a, _ in BAD_NUMBERS])
def test_bad_training_numbers(command, argv, message, tmp_path, capsys):
    assert message in fails([*TINY, *argv, "--out", str(tmp_path / "r")], command, capsys)
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


@pytest.mark.parametrize("command,argv,message", [
    ("vae-eval", ["--num-samples", "0"], "num_samples must be a whole number ≥ 1, got 0"),
    ("vae-eval", ["--num-samples", "-5"], "num_samples must be a whole number ≥ 1, got -5"),
    ("vae-eval", ["--limit", "0"], "limit must be a whole number ≥ 1, got 0"),
    ("vae-eval", ["--chunk-size", "0"], "chunk_size must be a whole number ≥ 1, got 0"),
    ("vae-sample", ["-n", "0"], "n must be a whole number ≥ 1, got 0"),
    ("vae-sample", ["--temperature", "0"], "temperature must be a finite number > 0"),
    ("vae-plot", ["nonsense"], "unknown figure 'nonsense'"),
])
def test_bad_numbers_of_a_finished_run(finished, command, argv, message, capsys):
    assert message in fails([str(finished), *argv], command, capsys)


def test_divergence_that_stays_finite_is_stopped(tmp_path, capsys):
    err = fails([*TINY, "--lr", "1e6", "--epochs", "2", "--out", str(tmp_path / "r")],
                "vae-train", capsys)
    assert "nats per data point in epoch 1" in err and "1000 nats per dimension" in err
    assert "no checkpoint was written; try a smaller learning rate" in err
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_the_divergence_check_can_be_turned_off(tmp_path, capsys):
    assert train_main([*TINY, "--lr", "1e6", "--epochs", "1", "--no-divergence-check",
                       "--out", str(tmp_path / "r")]) == 0


def test_empty_training_data_is_named():
    from guides import make_guide
    from models import make_model

    with pytest.raises(DataError, match=r"the train data is empty \(0 rows\)"):
        fit(make_model("bernoulli_mlp"), make_guide("gaussian_mlp"), torch.zeros(0, 784),
            progress=False)


def copy_run(finished, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    return out


def test_same_size_corruption_is_detected_everywhere(finished, tmp_path, capsys):
    """Twenty random 4 KiB blocks of random bytes written in place: every command that reads
    the checkpoint says which file is damaged, in one line."""
    rng = random.Random(0)
    out = copy_run(finished, tmp_path)
    path = out / "best.pt"
    original = path.read_bytes()
    for trial in range(20):
        data = bytearray(original)
        at = rng.randrange(0, len(data) - 4096)
        data[at:at + 4096] = rng.randbytes(4096)
        path.write_bytes(bytes(data))
        assert path.stat().st_size == len(original)
        command, argv = [("vae-eval", ["--num-samples", "2"]), ("vae-plot", ["samples"]),
                         ("vae-sample", ["-n", "4"])][trial % 3]
        err = fails([str(out), *argv], command, capsys)
        assert f"checkpoint {path} is damaged" in err, (trial, err)
    path.write_bytes(original)
    ckpt = out / "checkpoint.pt"
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2: len(data) // 2 + 4096] = bytes(4096)
    ckpt.write_bytes(bytes(data))
    err = fails([*TINY, "--epochs", "3", "--out", str(out), "--resume"], "vae-train", capsys)
    assert f"checkpoint {ckpt} is damaged" in err


def test_non_finite_tensors_in_a_checkpoint_are_refused(tmp_path):
    nan = torch.tensor([1.0, float("nan")])
    save_checkpoint(tmp_path / "c.pt", {"epoch": 1, "model": {"w": nan}})
    with pytest.raises(CheckpointError, match=r"holds NaN or infinite values \(at /model/w\)"):
        load_checkpoint(tmp_path / "c.pt")


@pytest.mark.parametrize("fault,message", [
    (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
    (PermissionError(errno.EACCES, "Permission denied"), "Permission denied"),
])
def test_a_failed_checkpoint_write_is_one_line_and_keeps_the_last_epoch(fault, message, tmp_path,
                                                                       capsys, monkeypatch):
    out = tmp_path / "run"
    assert train_main([*TINY, "--epochs", "1", "--out", str(out)]) == 0
    real = ckpt_module.os.fsync

    def fsync(fd):  # the disk fills up as the next checkpoint is written
        if ".checkpoint.pt." in os.readlink(f"/proc/self/fd/{fd}"):
            raise fault
        real(fd)

    monkeypatch.setattr(ckpt_module.os, "fsync", fsync)
    err = fails([*TINY, "--epochs", "2", "--out", str(out), "--resume"], "vae-train", capsys)
    monkeypatch.setattr(ckpt_module.os, "fsync", real)
    assert f"cannot write {out / 'checkpoint.pt'}: {message}" in err
    assert "its copy of epoch 1 is kept" in err
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1
    assert not list(out.glob(".*.tmp"))


@pytest.mark.parametrize("where,message", [
    ("below_a_file", "Not a directory"),
    ("proc", "cannot create run folder /proc/"),
])
def test_an_impossible_run_folder_is_one_line(where, message, tmp_path, capsys):
    if where == "below_a_file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "run"
    else:
        out = "/proc/vae-lab-test/run"
    assert message in fails([*TINY, "--out", str(out)], "vae-train", capsys)


def test_resume_messages_say_what_is_there(finished, tmp_path, capsys):
    out = copy_run(finished, tmp_path)
    err = fails([*TINY, "--epochs", "1", "--out", str(out), "--resume"], "vae-train", capsys)
    assert "has 2 finished epochs; --epochs 1 would not continue it: ask for 2 or more" in err
    empty = tmp_path / "empty"
    err = fails([*TINY, "--out", str(empty), "--resume"], "vae-train", capsys)
    assert f"nothing to resume in {empty}: it has no checkpoint.pt" in err
    (out / "config.json").write_text('{"run": [1, 2]}')  # damaged: a list where a table goes
    assert train_main([*TINY, "--epochs", "3", "--out", str(out), "--resume"]) == 0
    assert "resuming with the copy in checkpoint.pt" in capsys.readouterr().out
    (out / "config.json").unlink()
    assert train_main([*TINY, "--epochs", "4", "--out", str(out), "--resume"]) == 0
    assert "config.json is missing; resuming with the copy" in capsys.readouterr().out
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 4


def test_a_second_process_on_one_folder_is_refused(finished, tmp_path, capsys):
    out = copy_run(finished, tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from inference.checkpoint import run_lock\n"
         f"with run_lock({str(out)!r}):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        err = fails([*TINY, "--epochs", "3", "--out", str(out), "--resume"], "vae-train", capsys)
        assert f"run folder {out} is in use by process {holder.pid}" in err
        with pytest.raises(RunInUse):
            with run_lock(out):
                pass
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    with run_lock(out):  # the lock died with its process
        pass
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 2  # the refused run wrote nothing


def test_temporaries_of_a_killed_write_are_removed_on_start(finished, tmp_path):
    out = copy_run(finished, tmp_path)
    (out / ".checkpoint.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    assert train_main([*TINY, "--epochs", "3", "--out", str(out), "--resume"]) == 0
    assert not list(out.glob(".*.tmp"))


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(tmp_path):
    """Killed at random moments (startup, mid-epoch, during a checkpoint write, during the
    figures), resumed until it finishes: the same history as a run never killed, and no
    temporary file left."""
    args = [sys.executable, "-m", "inference.cli", "--epochs", "3", "--hidden", "64",
            "--z-dim", "4", "--quiet", "--no-tensorboard"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    straight = tmp_path / "straight"
    subprocess.run([*args, "--out", str(straight)], env=env, check=True, capture_output=True)
    expected = load_checkpoint(straight / "checkpoint.pt")["history"]
    rng = random.Random(1)
    for trial in range(3):
        out = tmp_path / f"killed{trial}"
        proc = subprocess.Popen([*args, "--out", str(out)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.0, 8.0))
        proc.kill()
        proc.wait()
        resume = ["--resume"] if (out / "config.json").exists() else []
        subprocess.run([*args, "--out", str(out), *resume], env=env, check=True,
                       capture_output=True)
        got = load_checkpoint(out / "checkpoint.pt")["history"]
        strip = lambda h: [(r["epoch"], r["objective"], r["valid_elbo"]) for r in h]  # noqa: E731
        assert strip(got) == strip(expected)
        assert not list(out.glob(".*.tmp"))
