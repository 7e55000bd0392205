"""Complexity lengths, the background's perturbed data, several scores at once, and vae-ood."""

import io
import json
import math

import pytest
import torch

from guides import make_guide
from inference.anomaly import (
    PerturbedData,
    anomaly_scores,
    compressed_length,
    likelihood_regret,
    ood_metrics,
)
from inference.anomaly.complexity import NATS_PER_BYTE, choose_compressor
from inference.anomaly.detect import ScoreOptions, compare
from inference.checkpoint import load_checkpoint
from inference.data import TensorData


def _bar(width: int) -> torch.Tensor:
    """A 28 x 28 binary image: a vertical bar ``width`` pixels wide, flat (1, 784)."""
    image = torch.zeros(28, 28)
    image[4:24, 10:10 + width] = 1
    return image.reshape(1, 784)


def test_group4_codes_are_short_for_simple_images_and_capped_at_the_raw_bits():
    """A blank page and a bar cost a few bytes of T.6; pixel noise would cost more than its
    98 raw bytes, so it is stored raw: 98 + 1 bytes exactly."""
    blank, bar = torch.zeros(1, 784), _bar(4)
    noise = torch.bernoulli(torch.full((3, 784), 0.5), generator=torch.Generator().manual_seed(0))
    lengths = compressed_length(torch.cat([blank, bar, noise]))  # auto: tiff-g4
    assert choose_compressor(noise) == "tiff-g4" and lengths.dtype == torch.float64
    assert lengths[0] < lengths[1] < 20 * NATS_PER_BYTE
    torch.testing.assert_close(lengths[2:], torch.full((3,), 99 * NATS_PER_BYTE,
                                                       dtype=torch.float64))


def test_png_and_deflate_lengths_are_their_payloads():
    """PNG's length is its IDAT chunks (the file less its fixed 57 bytes of signature, IHDR,
    IDAT framing and IEND); DEFLATE's the raw stream of the packed bits."""
    import zlib

    import numpy as np
    from PIL import Image

    grey = torch.rand(4, 784, generator=torch.Generator().manual_seed(1)) * 0.5
    grey[:2] = grey[:2].round(decimals=1)  # two more compressible images
    png = compressed_length(grey)  # auto: png for grey levels
    for row, length in zip(grey, png, strict=True):
        buffer = io.BytesIO()
        pixels = (row * 255).round().to(torch.uint8).numpy().reshape(28, 28)
        Image.fromarray(pixels, "L").save(buffer, format="PNG", optimize=True)
        payload = min(len(buffer.getvalue()) - 57, 784) + 1
        assert length.item() == pytest.approx(payload * NATS_PER_BYTE)
    bar = _bar(6)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    packed = np.packbits(bar.numpy()[0] > 0).tobytes()
    expected = len(deflate.compress(packed) + deflate.flush()) + 1
    assert compressed_length(bar, compressor="zlib").item() == pytest.approx(
        expected * NATS_PER_BYTE)
    with pytest.raises(ValueError, match="bilevel images only"):
        compressed_length(grey, compressor="tiff-g4")
    with pytest.raises(ValueError, match="values in \\[0, 1\\]"):
        compressed_length(grey * 3)
    with pytest.raises(ValueError, match="unknown compressor 'flif'"):
        compressed_length(bar, compressor="flif")


def test_complexity_is_minus_log_px_less_the_length(binary_x):
    from models import make_model

    model = make_model("bernoulli_mlp", x_dim=784, z_dim=4, hidden=(32,))
    guide = make_guide("gaussian_mlp", x_dim=784, z_dim=4, hidden=(32,))
    x = binary_x[:6]
    nll = anomaly_scores(model, guide, x, num_samples=16, seed=3)
    s = anomaly_scores(model, guide, x, score="complexity", num_samples=16, seed=3)
    torch.testing.assert_close(s, nll.double() - compressed_length(x))


def test_perturbed_batches_replace_the_share_asked_for():
    """Binary pixels are replaced by fair coins: a share rate / 2 of them changes; grey ones
    by uniform levels. Rate 0 serves the data unchanged."""
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((2000, 784), 0.2))
    data = TensorData(x)
    for rate in (0.0, 0.3, 1.0):
        batch, _ = next(PerturbedData(data, rate).batches(2000))
        changed = (batch != x).double().mean().item()
        assert changed == pytest.approx(rate / 2, abs=0.003)
        assert ((batch == 0) | (batch == 1)).all()
    grey = TensorData(torch.full((500, 784), 0.25))
    batch, _ = next(PerturbedData(grey, 0.5).batches(500))
    moved = batch != 0.25
    assert moved.double().mean().item() == pytest.approx(0.5, abs=0.01)
    assert batch[moved].mean().item() == pytest.approx(0.5, abs=0.01)  # U(0, 1)
    with pytest.raises(ValueError, match="rate must be in"):
        PerturbedData(data, 1.5)


def test_compare_shares_log_px_and_matches_each_score_alone(linear_model):
    """On the linear-Gaussian oracle (exact guide), scores computed together equal the same
    scores computed one by one, and their metrics are the metrics of those scores."""
    guide = make_guide("linear_gaussian", x_dim=6, z_dim=2).double().set_posterior(linear_model)
    with torch.no_grad():
        marginal = linear_model.marginal()
        inside, reference = marginal.sample((40,)), marginal.sample((100,))
        shifted = marginal.sample((30,)) + 3.0
    options = ScoreOptions(num_samples=8, steps=5, eval_particles=16, typicality_batch=1)
    out = compare(linear_model, guide, inside, {"shifted": shifted},
                  scores=("nll", "regret", "typicality"), options=options, reference=reference,
                  bootstrap_rounds=20)
    assert set(out["scores"]) == {"nll", "regret", "typicality"}
    nll = out["scores"]["nll"]
    assert nll["in"].shape == (40,) and nll["shifted"].shape == (30,)
    torch.testing.assert_close(out["scores"]["nll"]["in"],
                               -marginal.log_prob(inside).detach(), atol=1e-10, rtol=0)
    alone = likelihood_regret(linear_model, guide, shifted, steps=5, eval_particles=16)
    torch.testing.assert_close(out["scores"]["regret"]["shifted"], alone.regret)
    assert out["entropy"] == pytest.approx(-marginal.log_prob(reference).mean().item(),
                                           abs=1e-10)
    m = out["metrics"]["shifted"]["nll"]
    expected = ood_metrics(out["scores"]["nll"]["in"], out["scores"]["nll"]["shifted"])
    assert {k: m[k] for k in expected} == expected and m["auroc"] > 0.99
    assert set(m) == {"auroc", "auprc", "fpr95", "auroc_se", "auprc_se", "fpr95_se"}
    assert all(v > 0 for v in out["seconds_per_1000"].values())
    with pytest.raises(ValueError, match="needs held-out in-distribution data"):
        compare(linear_model, guide, inside, {"shifted": shifted}, scores=("typicality",))
    with pytest.raises(ValueError, match="unknown anomaly score 'elbo'"):
        compare(linear_model, guide, inside, {"shifted": shifted}, scores=("elbo",))


def test_histogram_figure_has_a_panel_per_set_and_score():
    from inference.anomaly.report import format_table, ood_histogram_figure

    g = torch.Generator().manual_seed(0)
    scores = {s: {"in": torch.randn(50, generator=g), "a": torch.randn(40, generator=g) + 2,
                  "b": torch.randn(30, generator=g)} for s in ("nll", "regret")}
    metrics = {n: {s: {**ood_metrics(scores[s]["in"], scores[s][n]),
                       "auroc_se": 0.01, "auprc_se": 0.01, "fpr95_se": 0.01}
                   for s in scores} for n in ("a", "b")}
    fig = ood_histogram_figure(scores, metrics, in_name="train set")
    assert len(fig.axes) == 4
    assert fig.axes[0].get_title().startswith("nll: AUROC 0.9")
    table = format_table(metrics, {"nll": 1.0, "regret": 2.5}).splitlines()
    assert len(table) == 5 and table[1].split()[:2] == ["a", "nll"]


FAST = ["--epochs", "1", "--hidden", "32", "--z-dim", "4", "--quiet", "--no-tensorboard",
        "--no-figures", "--train-limit", "1000"]


def test_vae_ood_prints_the_table_and_writes_json_scores_and_figure(tmp_path, capsys):
    from inference.cli import ood_main, train_main

    run = tmp_path / "run"
    assert train_main([*FAST, "--out", str(run)]) == 0
    capsys.readouterr()
    assert ood_main([str(run), "--against", "noise", "constant", "--limit", "40",
                     "--num-samples", "16", "--steps", "3", "--eval-particles", "8",
                     "--score", "nll", "regret", "complexity", "typicality", "ratio",
                     "--background-epochs", "1", "--bootstrap", "10"]) == 0
    out = capsys.readouterr().out
    assert "training the background pair (1 epochs" in out
    lines = [line for line in out.splitlines() if line.startswith(("noise", "constant"))]
    assert len(lines) == 10 and all(len(line.split()) == 12 for line in lines)
    report = json.loads((run / "ood-noise+constant.json").read_text())
    assert report["in"]["n"] == 40 and report["against"]["noise"]["n"] == 40
    assert report["options"]["compressor"] == "tiff-g4"
    assert set(report["metrics"]["constant"]) == {"nll", "regret", "complexity", "typicality",
                                                  "ratio"}
    # by hand (Mann-Whitney): the share of (in, noise) pairs the NLL orders right, ties half
    scores = load_checkpoint(run / "ood-noise+constant-scores.pt")["scores"]["nll"]
    inside, noise = scores["in"].double(), scores["noise"].double()
    pairs = (noise[:, None] > inside[None, :]).double() + 0.5 * (noise[:, None] == inside)
    auroc = report["metrics"]["noise"]["nll"]["auroc"]
    assert auroc == pytest.approx(pairs.mean().item(), abs=1e-12)
    assert auroc > 0.95  # Bernoulli noise is far less likely than digits, even after 1 epoch
    assert (run / "figures" / "ood-noise+constant.png").stat().st_size > 10_000
    assert (run / "background-p0.2-l20.0001" / "checkpoint.pt").exists()
    assert math.isfinite(report["entropy"])


def test_vae_ood_errors_are_one_line(tmp_path, capsys):
    from inference.cli import ood_main

    with pytest.raises(SystemExit) as info:
        ood_main([str(tmp_path / "missing"), "--against", "noise"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vae-ood: error:") and "\n" not in err
    with pytest.raises(SystemExit) as info:
        ood_main([str(tmp_path), "--against", "cifar10"])
    assert info.value.code == 2 and "unknown set 'cifar10'" in capsys.readouterr().err
