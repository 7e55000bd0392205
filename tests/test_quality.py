"""Sample quality of models: the reference classifier (deterministic, cached), samples of
any model against real images, and vae-eval --quality on a run folder."""

import functools
import json
import math

import pytest
import torch

from inference import TensorData, load_splits
from inference.config import RunConfig
from inference.quality import (
    CLASSIFIER_VERSION,
    QualityReference,
    class_quality,
    independent_pixels,
    model_samples,
    reference_classifier,
    sample_quality,
    train_classifier,
)
from inference.quality.classifier import _load_cached
from inference.quality.run import comparison_sets
from models import make_model


@pytest.fixture(scope="module")
def embedded():
    return load_splits("embedded", binarize="none")


@pytest.fixture(scope="module")
def cached(tmp_path_factory, embedded):
    """A 1-epoch classifier of the embedded set, trained once into a cache folder."""
    folder = tmp_path_factory.mktemp("classifiers")
    lines = []
    net = reference_classifier("embedded", epochs=1, cache_dir=folder, progress=False,
                               log=lines.append)
    return net, folder, lines


def test_classifier_training_is_deterministic_under_a_seed(embedded):
    train, valid, test = (s.subset(n, seed=1) for s, n in zip(embedded, (1000, 300, 300),
                                                                strict=True))
    nets = [train_classifier(train, valid, test, epochs=e, seed=s, progress=False,
                             log=lambda _: None) for s, e in ((0, 2), (0, 2), (1, 1))]
    same, other = nets[0].state_dict(), nets[2].state_dict()
    for name, value in nets[1].state_dict().items():
        assert torch.equal(value, same[name]), name
    assert not torch.equal(same["head.weight"], other["head.weight"])
    info = nets[0].info
    assert info["input"] == "grey" and info["epochs"] == 2 and len(info["valid_accuracy"]) == 2
    assert info["best_epoch"] == 1 + info["valid_accuracy"].index(max(info["valid_accuracy"]))
    assert info["test_accuracy"] > 0.7  # 10 classes: chance is 0.1
    binary = train_classifier(train, valid, None, binary=True, epochs=1, progress=False,
                              log=lambda _: None)
    assert binary.info["input"] == "binary" and binary.info["test_accuracy"] is None
    with pytest.raises(ValueError, match="labels"):
        train_classifier(TensorData(train.x), valid, progress=False)


def test_reference_classifier_is_cached_and_refused_when_stale(cached, tmp_path):
    net, folder, lines = cached
    assert any("training a CNN on embedded grey" in line for line in lines)
    path = folder / f"embedded-grey-seed0-e1-{CLASSIFIER_VERSION}.pt"
    assert net.path == path and path.exists()
    again = []
    loaded = reference_classifier("embedded", epochs=1, cache_dir=folder, log=again.append)
    assert len(again) == 1 and "from" in again[0] and "test accuracy" in again[0]
    for name, value in net.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name]), name
    assert loaded.info["test_accuracy"] == net.info["test_accuracy"] > 0.85
    expect = {k: net.info[k] for k in ("version", "dataset", "input", "seed", "epochs", "data")}
    assert _load_cached(path, expect) is not None
    assert _load_cached(path, {**expect, "version": "cnn0"}) is None  # another version
    assert _load_cached(path, {**expect, "data": {"other": "files"}}) is None
    damaged = tmp_path / path.name
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    damaged.write_bytes(bytes(raw))
    assert _load_cached(damaged, expect) is None  # the digest catches it: retrained
    with pytest.raises(ValueError, match="no grey levels"):
        reference_classifier("binarized-mnist")


def test_a_real_set_against_itself_and_a_crude_baseline(cached, embedded):
    net, _, _ = cached
    train, _, test = embedded
    real = test.subset(600, seed=0)
    ref = QualityReference(net, real)
    itself = ref.score(real.x)
    assert itself["frechet_distance"] == 0.0
    assert itself["precision"] == itself["recall"] == 1.0
    assert itself["class_entropy"] == pytest.approx(math.log(10), abs=0.02)  # ~balanced
    floor = ref.score(train.subset(600, seed=3).x)
    noise = ref.score(independent_pixels(train.x, 600, seed=0))
    assert 0 < floor["frechet_distance"] < noise["frechet_distance"] / 10
    assert floor["recall"] > 0.5 > noise["recall"]
    same = sample_quality(lambda n: independent_pixels(train.x, n, seed=0), ref,
                          classifier=net, n=600)
    assert same == noise  # a sampler or its tensor, a prepared reference or not
    assert sample_quality(real.x, real.x, classifier=net)["frechet_distance"] == 0.0


def test_independent_pixels_draw_each_pixel_from_its_own_column():
    x = torch.arange(40.0).reshape(8, 5)  # column j holds j, j + 5, ..., j + 35
    drawn = independent_pixels(x, 1000, seed=0)
    assert drawn.shape == (1000, 5)
    assert ((drawn % 5) == torch.arange(5.0)).all()
    grey = torch.rand(30, 4, generator=torch.Generator().manual_seed(0))
    binary = independent_pixels(grey, 40_000, seed=1, binary=True)
    assert set(binary.unique().tolist()) == {0.0, 1.0}
    torch.testing.assert_close(binary.mean(0), grey.mean(0), atol=0.01, rtol=0)


def test_model_samples_means_draws_and_labels():
    model = make_model("bernoulli_mlp", z_dim=4, hidden=(16,))
    means = model_samples(model, 250, batch_size=100)
    draws = model_samples(model, 250, mean=False, batch_size=100)
    assert means.shape == draws.shape == (250, 784)
    assert 0 < means.min() and means.max() < 1
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    cvae = make_model("conditional_mlp", z_dim=2, hidden=(16,))
    assert model_samples(cvae, 30, label=3, batch_size=7).shape == (30, 784)
    with pytest.raises(ValueError, match="site"):
        model_samples(model, 5, site="obs")


def test_class_quality_of_real_images_is_perfect_and_accuracy_is_the_classifiers(
        cached, embedded):
    net, _, _ = cached
    real = embedded[2].subset(500, seed=0)
    result = class_quality(lambda c, n: real.x[real.y == c], real, classifier=net)
    predicted = QualityReference(net, real).labels(real.x)
    assert [r["class"] for r in result["per_class"]] == list(range(10))
    for r in result["per_class"]:
        assert r["frechet_distance"] == 0.0 and r["precision"] == r["recall"] == 1.0
        mine = real.y == r["class"]
        assert r["accuracy"] == pytest.approx((predicted[mine] == r["class"]).double().mean())
    accuracy = sum(r["accuracy"] for r in result["per_class"]) / 10
    assert result["mean"]["accuracy"] == pytest.approx(accuracy)


def test_comparison_sets_follow_the_pixels():
    with pytest.raises(ValueError, match="no grey levels"):
        comparison_sets(RunConfig(dataset="binarized-mnist"), "test", "mean")
    real, train, binary = comparison_sets(RunConfig(), "test", "draw")
    assert binary and set(real.x.unique().tolist()) == {0.0, 1.0}
    assert real.info["binarize"].startswith("static") and train.binarize == "none"
    real, _, binary = comparison_sets(RunConfig(), "test", "mean")
    assert not binary and len(real.x.unique()) > 2
    _, _, binary = comparison_sets(RunConfig(binarize="none", model="gaussian_mlp"), "valid",
                                   "draw")
    assert not binary


def test_vae_eval_quality_of_a_conditional_run(cached, tmp_path, capsys, monkeypatch):
    from inference.cli import eval_main, train_main
    from inference.quality import run as quality

    net, folder, _ = cached
    monkeypatch.setattr(quality, "reference_classifier",
                        functools.partial(reference_classifier, epochs=1))
    out = tmp_path / "cvae"
    assert train_main(["--model", "conditional_mlp", "--guide", "conditional_mlp", "--z-dim",
                       "2", "--hidden", "32", "--epochs", "1", "--train-limit", "1000",
                       "--quiet", "--no-figures", "--no-tensorboard", "--out", str(out)]) == 0
    capsys.readouterr()
    assert eval_main([str(out), "--quality", "--quality-samples", "400", "--limit", "600",
                      "--classifier-cache", str(folder), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "400 from the prior, pixel means E[x | z]" in printed
    assert "train vs test (floor)" in printed and "per class" in printed
    summary = json.loads((out / "quality-test-N400-mean-random600.json").read_text())
    rows = summary["rows"]
    assert summary["classifier"]["test_accuracy"] == net.info["test_accuracy"]
    assert rows["model"]["n"] == 400 and summary["data"]["n"] == 600
    floor, noise, model = (rows[k]["frechet_distance"] for k in
                           ("train vs test (floor)", "independent pixels", "model"))
    assert floor < model and floor < noise
    assert len(summary["per_class"]["model"]["per_class"]) == 10
    assert summary["per_class"]["n_per_class"] == 40
