"""vae-train: files it writes, what it prints, its one-line errors, kill and resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from inference import load_checkpoint, load_run
from inference.cli import train_main

FAST = ["--epochs", "1", "--hidden", "32", "--z-dim", "4", "--quiet"]


def test_train_writes_checkpoint_config_metrics_and_prints_test_elbo(tmp_path, capsys):
    assert train_main([*FAST, "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "data: embedded train 9000 x 784 (dynamic binarization), valid 1000, test 2000" in out
    assert "epoch 1: train ELBO" in out and "final test ELBO: -" in out
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert config["model"]["hidden"] == [32] and config["guide"]["z_dim"] == 4
    assert config["data"]["test"]["n"] == 2000
    assert metrics["epochs"] == 1 and metrics["best_epoch"] == 1
    assert metrics["test_elbo"] < 0 and metrics["history"][0]["valid_elbo"] < 0
    assert f"{metrics['test_elbo']:.2f}" in out
    model, guide, saved = load_run(tmp_path / "run")
    assert saved["run"]["model"] == "bernoulli_mlp" and model.z_dim == guide.z_dim == 4


def test_vae_sample_never_replaces_a_training_figure_or_another_setting(tmp_path, capsys):
    from inference.cli import sample_main

    run = tmp_path / "run"
    assert train_main([*FAST, "--no-tensorboard", "--out", str(run)]) == 0
    figure = (run / "figures" / "samples.png").read_bytes()
    for argv in (["-n", "4"], ["-n", "4", "--temperature", "0.7"], ["-n", "4", "--seed", "2"]):
        assert sample_main([str(run), *argv]) == 0
    written = [line.split()[-1] for line in capsys.readouterr().out.splitlines()
               if line.startswith("wrote ")]
    assert [Path(p).name for p in written] == ["n4.png", "n4-t0.7.png", "n4-seed2.png"]
    assert (run / "figures" / "samples.png").read_bytes() == figure  # the training figure


def _error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        train_main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vae-train: error: ") and "\n" not in err, err  # one line
    return err


def test_errors_are_one_line(tmp_path, capsys):
    run = str(tmp_path / "run")
    assert train_main([*FAST, "--out", run]) == 0
    assert "already holds a run; pass --resume" in _error([*FAST, "--out", run], capsys)
    assert "--resume needs --out" in _error(["--resume"], capsys)
    err = _error([*FAST, "--out", run, "--resume", "--lr", "0.1"], capsys)
    assert "lr 0.1 differs from the resumed run's 0.001" in err
    missing = _error([*FAST, "--dataset", "mnist", "--data-dir", str(tmp_path / "none"),
                      "--no-download", "--out", str(tmp_path / "r2")], capsys)
    assert "MNIST/raw" in missing and "--data-dir" in missing
    ckpt = tmp_path / "run" / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    assert "is damaged" in _error([*FAST, "--out", run, "--resume", "--epochs", "2"],
                                            capsys)
    pair = _error([*FAST, "--model-config", '{"z_dim": 8}', "--out", str(tmp_path / "r3")],
                  capsys)
    assert "site 'z'" in pair and "(4,)" in pair and "(8,)" in pair


def test_sigkill_mid_epoch_then_resume_finishes_as_if_never_killed(tmp_path):
    args = ["--epochs", "4", "--hidden", "256", "--z-dim", "16", "--quiet"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "inference.cli", *args]
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    proc = subprocess.Popen([*cmd, "--out", str(killed)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # into the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    epoch = load_checkpoint(killed / "checkpoint.pt")["epoch"]  # whole, never half-written
    assert 1 <= epoch < 4
    subprocess.run([*cmd, "--out", str(killed), "--resume"], env=env, check=True,
                   capture_output=True)
    subprocess.run([*cmd, "--out", str(straight)], env=env, check=True, capture_output=True)
    resumed = json.loads((killed / "metrics.json").read_text())["history"]
    expected = json.loads((straight / "metrics.json").read_text())["history"]
    strip = lambda h: [(r["epoch"], r["objective"], r["valid_elbo"]) for r in h]  # noqa: E731
    assert strip(resumed) == strip(expected)


def test_train_can_evaluate_at_the_end(tmp_path, capsys):
    run = tmp_path / "run"
    assert train_main([*FAST, "--out", str(run), "--eval-samples", "16"]) == 0
    out = capsys.readouterr().out
    assert "importance samples K = 16" in out and "NLL" in out
    assert json.loads((run / "eval-test-K16.json").read_text())["n"] == 2000


def test_variants_run_through_vae_train_and_vae_sample(tmp_path, capsys):
    """β annealing, a conditional pair with vae-sample --label, and M2 with hidden labels:
    all through the same vae-train."""
    from inference.cli import sample_main

    beta_run, cvae, m2 = (str(tmp_path / n) for n in ("beta", "cvae", "m2"))
    assert train_main([*FAST, "--no-figures", "--epochs", "2", "--beta", "2",
                       "--anneal", "linear:1", "--out", beta_run]) == 0
    assert "β linear warm-up over 1 epochs to 2" in capsys.readouterr().out
    history = json.loads((tmp_path / "beta" / "metrics.json").read_text())["history"]
    assert [r["beta"] for r in history] == [pytest.approx(2 * 70 / 71), 2.0]  # 71 steps
    assert train_main([*FAST, "--no-figures", "--model", "conditional_mlp", "--guide",
                       "conditional_mlp", "--out", cvae]) == 0
    assert sample_main([cvae, "--label", "7", "-n", "4"]) == 0
    assert (tmp_path / "cvae" / "samples" / "n4-label7.png").stat().st_size > 1000
    with pytest.raises(SystemExit):
        sample_main([beta_run, "--label", "7"])
    assert "needs a label-conditional model" in capsys.readouterr().err
    assert train_main([*FAST, "--no-figures", "--model", "conditional_mlp", "--guide", "m2",
                       "--loss", "m2", "--labels", "100", "--batch-size", "500",
                       "--out", m2]) == 0
    out = capsys.readouterr().out
    metrics = json.loads((tmp_path / "m2" / "metrics.json").read_text())
    assert f"test accuracy of q(y | x): {metrics['test_accuracy']:.4f}" in out
    # by hand: q(y | x)'s most probable class against the labels of the test images scored
    from inference.config import RunConfig
    from inference.run_outputs import run_split

    _, guide, saved = load_run(m2)
    test = run_split(RunConfig.from_json(saved["run"]), "test")
    predicted = guide.classifier(test.x).argmax(-1)
    assert metrics["test_accuracy"] == pytest.approx((predicted == test.y).double().mean().item())
    config = json.loads((tmp_path / "m2" / "config.json").read_text())
    assert config["data"]["train"]["labelled"] == 100
    assert config["data"]["train"]["unlabelled"] == 8900  # 9000 after the valid split


def test_a_run_that_finished_no_epoch_leaves_a_folder_a_new_run_can_take(tmp_path, capsys):
    run = tmp_path / "run"
    err = _error([*FAST, "--no-figures", "--lr", "1e6", "--out", str(run)], capsys)
    assert "no checkpoint was written" in err
    assert not (run / "checkpoint.pt").exists() and (run / "metrics.jsonl").exists()
    err = _error([*FAST, "--lr", "1e-3", "--resume", "--out", str(run)], capsys)
    assert "has no finished epoch: drop --resume to start a new run there" in err
    assert train_main([*FAST, "--no-figures", "--lr", "1e-3", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "held a run that finished no epoch (config.json, metrics.jsonl, tensorboard)" in out
    assert json.loads((run / "config.json").read_text())["run"]["lr"] == 1e-3
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1


def test_resuming_says_where_it_starts_and_which_results_it_outdates(tmp_path, capsys):
    from inference.cli import eval_main
    from inference.run_folder import weights_digest

    run = tmp_path / "run"
    quiet = [*FAST, "--no-figures", "--no-tensorboard", "--out", str(run)]
    assert train_main(quiet) == 0
    assert eval_main([str(run), "--num-samples", "2", "--limit", "20", "--quiet"]) == 0
    scored = json.loads((run / "eval-test-K2-random20.json").read_text())
    assert scored["checkpoint"] == "best.pt" and scored["epoch"] == 1
    assert scored["weights_sha256"] == weights_digest(load_checkpoint(run / "best.pt"))
    capsys.readouterr()
    assert train_main([*quiet, "--epochs", "3", "--resume"]) == 0
    out = capsys.readouterr().out
    assert f"resuming {run} from epoch 2 of 3 (1 finished)" in out
    assert load_checkpoint(run / "best.pt")["epoch"] == 3
    assert ("note: eval-test-K2-random20.json scored best.pt of epoch 1; best.pt now holds "
            "epoch 3: score it again to update it") in out


def test_list_prints_each_description_as_a_whole_sentence(capsys):
    from guides import GUIDES
    from models import MODELS

    assert train_main(["--list"]) == 0
    text = capsys.readouterr().out.replace("\n" + " " * 19, " ")  # wrapped lines joined
    entries = dict(line.split(maxsplit=1) for line in text.splitlines() if line[:2] == "  ")
    assert set(entries) == set(MODELS) | set(GUIDES)
    for name, description in entries.items():
        assert description.endswith((".", ").")), (name, description)
    assert entries["code_prior"].endswith("Esser et al. 2021 a transformer).")
    assert "ConditionalMLP" in entries["m2"] and ":class:" not in text and "``" not in text


def test_adam_beta1_reaches_the_optimizer_and_bad_values_are_refused(tmp_path, capsys):
    for beta1, name in ((0.95, "example"), (None, "default")):
        argv = [*FAST, "--no-figures", "--no-tensorboard", "--out", str(tmp_path / name)]
        assert train_main(argv + (["--adam-beta1", str(beta1)] if beta1 else [])) == 0
        state = load_checkpoint(tmp_path / name / "checkpoint.pt")
        assert state["optimizer"]["param_groups"][0]["betas"] == (beta1 or 0.9, 0.999)
    for bad, words in (("1", "must be below 1, got 1.0"), ("-0.1", "must be a finite number ≥ 0"),
                       ("nan", "must be a finite number ≥ 0, got nan")):
        err = _error([*FAST, "--adam-beta1", bad, "--out", str(tmp_path / bad)], capsys)
        assert f"adam_beta1 {words}" in err, err
