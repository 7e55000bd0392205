"""The research workflow: validation and best checkpoint, experiment logs, config files,
label-aware figures, threads, the Python round trip, random subsets, honest names."""

import json
import re
from pathlib import Path

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO

from guides import GUIDES, make_guide
from inference import fit, load_checkpoint, load_dataset, load_run, save_run
from inference.cli import (
    default_threads,
    encode_main,
    eval_main,
    registered,
    set_threads,
    train_main,
)
from inference.data import TensorData
from inference.handlers import temperature
from inference.objectives import IWAE
from inference.train import epoch_summary
from inference.trainer import History, objective_name
from inference.visualize import interpolation
from models import MODELS, make_model

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--hidden", "16", "--z-dim", "2", "--quiet", "--no-figures", "--train-limit", "1000",
        "--valid", "300"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    assert train_main([*TINY, "--epochs", "3", "--out", str(out)]) == 0
    return out


def small_pair(seed=0):
    torch.manual_seed(seed)
    return (make_model("bernoulli_mlp", z_dim=2, hidden=(16,)),
            make_guide("gaussian_mlp", z_dim=2, hidden=(16,)))


def test_validation_chooses_the_epoch_patience_stops_and_test_is_scored_once(binary_x,
                                                                               tmp_path):
    """Validation data unlike the training data gets worse with every epoch: the first epoch
    is the best, patience 2 stops after the third, fit returns with the first epoch's
    weights, and the test data is scored once with them."""
    model, guide = small_pair()
    ckpt = tmp_path / "checkpoint.pt"
    ones = torch.ones(16, 784)
    history = fit(model, guide, binary_x, valid=ones, test=binary_x[:16], epochs=10,
                  batch_size=16, lr=1e-2, patience=2, divergence=None, checkpoint=ckpt,
                  progress=False)
    assert [r["epoch"] for r in history.records] == [1, 2, 3]
    assert history.best_epoch == 1 and history.stopped_early
    assert history.valid_elbo[0] > history.valid_elbo[1] > history.valid_elbo[2]
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["epoch"] == 1 and load_checkpoint(ckpt)["epoch"] == 3
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, best["model"][name])  # the weights fit returned
    assert set(history.test) == {"elbo", "reconstruction", "kl"}
    assert all("test_elbo" not in r for r in history.records)  # never scored per epoch
    again = fit(*small_pair(), binary_x, valid=ones, epochs=10, batch_size=16, lr=1e-2,
                patience=2, divergence=None, checkpoint=ckpt, resume=True, progress=False)
    assert len(again) == 3 and again.stopped_early  # a finished run stays finished


def test_vae_train_writes_best_logs_and_scores_test_at_the_end(run):
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best_epoch"] in (1, 2, 3) and (run / "best.pt").is_file()
    assert metrics["test_elbo"] < 0 and set(metrics["test"]) == {"elbo", "reconstruction", "kl"}
    assert metrics["data"]["valid"]["n"] == 300 and metrics["data"]["train"]["n"] == 1000
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    assert json.loads(lines[-1]) == metrics["history"][-1]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    valid = events.Scalars("valid/elbo")
    assert [e.step for e in valid] == [1, 2, 3]
    assert [e.value for e in valid] == pytest.approx(
        [r["valid_elbo"] for r in metrics["history"]], rel=1e-6)
    assert "config/text_summary" in events.Tags()["tensors"]


def test_a_saved_config_replays_and_flags_override(run, tmp_path, capsys):
    assert train_main(["--config", str(run / "config.json"), "--epochs", "1", "--quiet",
                       "--no-figures", "--no-tensorboard", "--out", str(tmp_path / "b")]) == 0
    first = json.loads((run / "config.json").read_text())["run"]
    second = json.loads((tmp_path / "b" / "config.json").read_text())["run"]
    assert {**first, "epochs": 1} == second
    toml = tmp_path / "settings.toml"
    toml.write_text('z_dim = 3\nhidden = [8]\ntrain_limit = 500\nvalid = 100\nlr = 0.002\n')
    assert train_main(["--config", str(toml), "--epochs", "1", "--quiet", "--no-figures",
                       "--no-tensorboard", "--out", str(tmp_path / "c")]) == 0
    third = json.loads((tmp_path / "c" / "config.json").read_text())["run"]
    assert (third["z_dim"], third["hidden"], third["lr"]) == (3, [8], 0.002)
    toml.write_text("z_dims = 3\n")
    with pytest.raises(SystemExit):
        train_main(["--config", str(toml), "--out", str(tmp_path / "d")])
    assert "unknown setting 'z_dims'" in capsys.readouterr().err


def test_conditional_figures_decode_with_a_label_not_a_random_one():
    torch.manual_seed(0)
    sizes = {"z_dim": 2, "hidden": (16,)}
    model, guide = make_model("conditional_mlp", **sizes), make_guide("conditional_mlp", **sizes)
    data = load_dataset("embedded", "test").take(50)
    frames = []
    for seed in (0, 1):  # the draws of y would differ between seeds
        pyro.set_rng_seed(seed)
        fig = interpolation(model, guide, data, steps=4)
        frames.append(torch.as_tensor(fig.axes[0].images[0].get_array().data))
    torch.testing.assert_close(frames[0], frames[1])
    from inference import latent

    z = latent.encode(guide, data.x[:2], data.y[:2])
    path = latent.interpolate(z[0], z[1], 4, "linear")
    want = latent.decode(model, path, data.y[:1].expand(4), like=data.x[:1])
    torch.testing.assert_close(frames[0][:28, :28], want[0].reshape(28, 28))


def test_threads_default_to_the_free_cores_and_follow_the_flag():
    import os

    assert 1 <= default_threads() <= (os.cpu_count() or 1)
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_folder_written_by_fit_or_save_run_loads(binary_x, tmp_path):
    model, guide = small_pair()
    fit(model, guide, binary_x, epochs=1, batch_size=16, progress=False,
        checkpoint=tmp_path / "fit" / "checkpoint.pt")
    loaded, _, saved = load_run(tmp_path / "fit")
    for a, b in zip(loaded.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    assert saved["model"]["name"] == "bernoulli_mlp" and saved["epoch"] == 1
    history = History([{"epoch": 1, "objective": -1.0}])
    save_run(tmp_path / "saved", model, guide, history=history)
    _, guide2, saved2 = load_run(tmp_path / "saved")
    assert saved2["history"] == history.records
    torch.testing.assert_close(guide2.head.weight, guide.head.weight)


def test_vae_eval_limit_is_a_stratified_random_subset(run, capsys):
    assert eval_main([str(run), "--num-samples", "4", "--limit", "100", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "random 100 (seed 0, stratified by label)" in out
    summary = json.loads((run / "eval-test-K4-random100.json").read_text())
    assert summary["n"] == 100 and summary["checkpoint"] == "best.pt"
    test = load_dataset("embedded", "test")
    subset = test.subset(100)
    counts, whole = torch.bincount(subset.y, minlength=10), torch.bincount(test.y, minlength=10)
    assert (counts - whole * 100 / len(test)).abs().max() < 1  # each class its share


def test_names_say_what_is_measured():
    assert objective_name(Trace_ELBO(), None) == "ELBO"
    assert objective_name(IWAE(3), 2.0) == "β-weighted IWAE bound (K=3)"
    line = epoch_summary({"epoch": 2, "objective": -99.5, "train_elbo": -98.0,
                          "valid_elbo": -97.25, "seconds": 1.0, "beta": 0.5},
                         History(objective_name="β-weighted ELBO"))
    assert line == ("epoch 2: train ELBO -98.00  valid ELBO -97.25  (running β-weighted ELBO "
                    "-99.50, β 0.5, 1.0 s)")


def test_conditional_pairs_are_scored_as_log_p_x_y(tmp_path, capsys):
    out = tmp_path / "cvae"
    assert train_main([*TINY, "--epochs", "1", "--model", "conditional_mlp", "--guide",
                       "conditional_mlp", "--no-tensorboard", "--out", str(out)]) == 0
    capsys.readouterr()
    assert eval_main([str(out), "--num-samples", "4", "--limit", "20", "--quiet"]) == 0
    assert "−log p(x, y)" in capsys.readouterr().out


def test_fast_path_lines_are_true(run, binary_x, tmp_path, capsys):
    from inference.objectives import STL

    history = fit(*small_pair(), binary_x, epochs=1, batch_size=16, loss=STL(2),
                  progress=False)
    assert history.fast_path == ("on (STL, eager: a captured forward graph drops its "
                                 "stop-gradients); eager")
    assert train_main([*TINY, "--epochs", "3", "--out", str(run), "--resume"]) == 0
    assert re.search(r"fast path: on \(ParticleELBO\); \S", capsys.readouterr().out)


def test_small_tools_encode_temperature_and_list(run, tmp_path):
    assert encode_main([str(run), "--out", str(tmp_path / "z.pt")]) == 0
    z = torch.load(tmp_path / "z.pt")
    assert z["loc"].shape == z["scale"].shape == (2000, 2) and z["y"].shape == (2000,)
    assert (z["scale"] > 0).all()
    assert encode_main([str(run), "--out", str(tmp_path / "z.npz")]) == 0
    import numpy as np

    assert np.load(tmp_path / "z.npz")["loc"].shape == (2000, 2)
    model, _ = small_pair()
    tr = pyro.poutine.trace(temperature(model, 0.5)).get_trace(None)
    assert torch.equal(tr.nodes["z"]["fn"].base_dist.scale, torch.full((1, 2), 0.5))
    listing = registered()
    for name in [*MODELS, *GUIDES]:
        assert re.search(rf"^  {name} +\S", listing, re.M), name


def test_the_docs_list_every_registered_pair_and_command():
    contract = (ROOT / "docs" / "guide" / "contract.md").read_text()
    table = contract[contract.index("Registered now"):]
    for name in [*MODELS, *GUIDES]:
        assert f"`{name}`" in table, name
    readme = (ROOT / "README.md").read_text()
    for command in ("vae-train", "vae-eval", "vae-plot", "vae-sample", "vae-encode", "vae-ood"):
        assert command in readme, command
    docs = "".join(p.read_text() for p in (ROOT / "docs").rglob("*.md"))
    assert "VAE_LAB_SMALL=1" in docs and "--threads" in docs


def test_the_train_subset_is_random(tmp_path):
    data = TensorData(torch.arange(20.0).reshape(10, 2), torch.tensor([0] * 5 + [1] * 5))
    picked = data.subset(4, seed=1)
    assert picked.y.tolist() == [0, 0, 1, 1]
    assert picked.x[:, 0].tolist() != [0.0, 2.0, 4.0, 6.0]  # not the first rows


def test_mlflow_logs_the_same_scalars_and_resumes_its_run(tmp_path, monkeypatch):
    import mlflow  # in the dev install: this test runs in CI, never skips
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file://{tmp_path / 'mlruns'}")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # a local store for the test
    out = tmp_path / "run"
    assert train_main([*TINY, "--epochs", "1", "--mlflow", "--no-tensorboard",
                       "--out", str(out)]) == 0
    run_id = (out / "mlflow_run_id").read_text()
    assert train_main([*TINY, "--epochs", "2", "--mlflow", "--no-tensorboard", "--resume",
                       "--out", str(out)]) == 0
    assert (out / "mlflow_run_id").read_text() == run_id  # the same MLflow run, continued
    history = mlflow.tracking.MlflowClient().get_metric_history(run_id, "valid/elbo")
    records = json.loads((out / "metrics.json").read_text())["history"]
    assert [m.step for m in history] == [1, 2]
    assert [m.value for m in history] == pytest.approx([r["valid_elbo"] for r in records])
