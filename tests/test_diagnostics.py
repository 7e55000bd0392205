"""Pareto k̂, effective sample size and the vae-eval scores, against known answers."""

import json
import math

import pytest
import torch

from guides import make_guide
from inference.cli import eval_main, train_main
from inference.diagnostics import khat_summary, psis_khat
from inference.scores import format_scores, score
from models import make_model


@pytest.mark.parametrize("shape", [0.3, 0.9])
def test_khat_recovers_the_tail_of_pareto_weights(shape):
    u = torch.rand(5000, 40, dtype=torch.float64)
    khat = psis_khat(-shape * u.log()).khat  # w = U^(-k) has a Pareto tail of shape k
    # one k̂ from ~3√K tail draws has a standard error near (1 + k) / √(3√K), about 0.13
    assert khat.mean().item() == pytest.approx(shape, abs=0.06)
    above = (khat > 0.7).double().mean().item()
    assert above == 0.0 if shape < 0.5 else above >= 0.8


def test_ess_and_degenerate_weights():
    lw = torch.log(torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]))
    diag = psis_khat(lw)
    torch.testing.assert_close(diag.ess, torch.tensor([4.0, 1.0]))
    assert diag.khat[0] == -math.inf  # equal weights: exact estimate
    summary = khat_summary(torch.tensor([0.1, 0.6, 0.8, 1.2]))
    assert summary["share_khat_above_0.7"] == 0.5 and summary["share_khat_0.5_to_0.7"] == 0.25
    with pytest.raises(ValueError, match="must be \\(K, N\\)"):
        psis_khat(torch.zeros(5))


def test_scores_of_an_exact_posterior_and_active_units():
    torch.manual_seed(0)
    model = make_model("linear_gaussian", x_dim=5, z_dim=2, init_noise=0.5).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[2.0, 0.0]] * 5))  # z_2 never reaches x: inactive
    guide = make_guide("linear_gaussian", x_dim=5, z_dim=2).double().set_posterior(model)
    x = model.marginal().sample((200,))
    summary, points = score(model, guide, x, num_samples=1000)
    exact = model.marginal().log_prob(x)
    assert summary["nll"] == pytest.approx(-exact.mean().item(), abs=1e-9)
    assert summary["elbo"] == pytest.approx(-summary["nll"], abs=1e-9)  # zero gap
    assert summary["nll_mc_stderr"] < 1e-6 and summary["ess_median"] == pytest.approx(1000)
    assert summary["kl"] == pytest.approx(summary["reconstruction"] - summary["elbo"])
    assert summary["bits_per_dim"] == pytest.approx(summary["nll"] / (5 * math.log(2)))
    assert summary["active_units"] == {"z": 1} and summary["latent_dims"] == {"z": 2}
    assert summary["share_khat_above_0.7"] == 0.0
    torch.testing.assert_close(points["nll"].double(), -exact, atol=1e-5, rtol=0)
    assert "active units    z: 1 / 2" in format_scores(summary)


def test_vae_eval_prints_a_table_and_writes_json(tmp_path, capsys):
    run = str(tmp_path / "run")
    assert train_main(["--epochs", "1", "--hidden", "32", "--z-dim", "4", "--quiet",
                       "--out", run]) == 0
    assert eval_main([run, "--num-samples", "64", "--limit", "50", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "points 50, importance samples K = 64" in out and "NLL" in out
    saved = json.loads((tmp_path / "run" / "eval-test-K64-random50.json").read_text())
    assert saved["n"] == 50 and saved["num_samples"] == 64 and saved["nll"] > 0
    assert saved["nll"] <= -saved["elbo"] + 1e-6  # the IW bound is tighter than the ELBO
    assert f"{saved['nll']:.2f}" in out


def test_khat_needs_21_weights_per_point_and_the_table_says_so(linear_model):
    """ArviZ fits the tail to ceil(0.2 K) weights and needs 5: below K = 21 every k̂ came back
    +inf, "100% of points unreliable", and the points file could not be read back."""
    guide = make_guide("linear_gaussian", x_dim=6, z_dim=2).double()
    x = linear_model.marginal().sample((5,))
    assert torch.isinf(psis_khat(torch.randn(20, 5)).khat).all()  # ArviZ's +inf, at K = 20
    few, points = score(linear_model, guide, x, num_samples=20)
    assert "khat" not in points and "khat_max" not in few
    assert "Pareto k̂        not computed: its tail fit needs K >= 21" in format_scores(few)
    enough, points = score(linear_model, guide, x, num_samples=21)
    assert torch.isfinite(points["khat"]).all()
    assert enough["khat_max"] == pytest.approx(points["khat"].max().item())
    assert "not computed" not in format_scores(enough)
