"""VQ-VAE: quantization, the straight-through gradient, the two auxiliary losses, the EMA
codebook, dead-code restarts and the bound, each against a computation by hand."""

import json
import math

import pyro
import pytest
import torch
from torch.nn import functional as F

from guides import make_guide
from inference import elbo_terms, fit
from inference.vq import VQELBO, encode_codes, fit_code_prior
from models import make_model, tie
from models.codes import Codebook, CodeSequence

SMALL = {"num_codes": 8, "code_dim": 3, "channels": (4, 6)}


def pair(seed=0, ema=False, **model):
    torch.manual_seed(seed)
    m = make_model("vqvae", **SMALL, **model)
    g = make_guide("vqvae", **SMALL, ema=ema)
    tie(m, g)
    return m, g


def test_quantization_picks_the_nearest_code():
    torch.manual_seed(0)
    book = Codebook(7, 3)
    z = torch.randn(4, 5, 3)  # (N, L, D)
    got = book.nearest(z)
    w = book.weight.detach()
    brute = torch.tensor([[min(range(7), key=lambda k, v=v: float((v - w[k]).pow(2).sum()))
                           for v in row] for row in z])
    assert torch.equal(got, brute)
    assert torch.equal(book.lookup(got), book.weight.detach()[brute])


def test_the_straight_through_gradient_reaches_the_encoder_as_the_identity(binary_x):
    m, g = pair()
    x = binary_x[:4]
    leaf = torch.randn(4, 49, 3, requires_grad=True)
    g.encoder.forward = lambda x: leaf  # z_e is this leaf
    z = pyro.poutine.trace(g).get_trace(x).nodes["z"]["value"]  # (4, 49·3)
    torch.testing.assert_close(z, g.codebook.lookup(g.codebook.nearest(leaf)).flatten(-2))
    weights = torch.randn(4, 147)
    (weights * z).sum().backward()
    torch.testing.assert_close(leaf.grad, weights.reshape(4, 49, 3))  # d z / d z_e = I


@pytest.mark.parametrize("ema", [False, True])
def test_loss_and_gradients_equal_the_formulas(binary_x, ema):
    """−log p(x | z_q) + L log K + ‖sg z_e − e‖² (not with EMA) + β ‖z_e − sg e‖², by hand."""
    m, g = pair(ema=ema)
    x, beta = binary_x[:5], 0.25
    with pyro.validation_enabled(False):
        loss = VQELBO(beta=beta, restart_below=None).differentiable_loss(m, g, x)
    params = [p for p in [*m.parameters(), *g.parameters()] if p.requires_grad]
    params = list({id(p): p for p in params}.values())
    got = torch.autograd.grad(loss, params, allow_unused=True)
    z_e = g.encoder(x)  # (N, L, D)
    k = torch.cdist(z_e.detach(), g.codebook.weight.detach()[None]).argmin(-1)  # (N, L)
    e = F.embedding(k, g.codebook.weight)  # (N, L, D)
    straight = z_e + (e - z_e).detach()
    logits = m.decoder(straight.flatten(-2))
    log_lik = (x * logits - F.softplus(logits)).sum(-1)  # Bernoulli, by hand
    want = (-(log_lik - 49 * math.log(8)).sum() + beta * (z_e - e.detach()).pow(2).sum()
            + (0 if ema else (z_e.detach() - e).pow(2).sum()))
    torch.testing.assert_close(loss, want)
    for a, b in zip(got, torch.autograd.grad(want, params, allow_unused=True), strict=True):
        if a is None or b is None:
            assert a is None and b is None
        else:
            torch.testing.assert_close(a, b)


def test_the_ema_update_follows_its_formula():
    book = Codebook(3, 2, ema=True, decay=0.9, eps=1e-5)
    start = book.weight.clone()
    z = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [5.0, 5.0]])
    codes = torch.tensor([0, 0, 2, 2])
    book.update(*book.statistics(z, codes))
    n = torch.tensor([2.0, 0.0, 2.0])
    cluster = 0.1 * n  # 0.9·0 + 0.1·n
    embed = 0.9 * start + 0.1 * torch.stack([z[0] + z[1], torch.zeros(2), z[2] + z[3]])
    smoothed = (cluster + 1e-5) / (cluster.sum() + 3e-5) * cluster.sum()
    torch.testing.assert_close(book.cluster_size, cluster)
    torch.testing.assert_close(book.weight, embed / smoothed[:, None])
    torch.testing.assert_close(book.usage, 0.1 * n)


def test_a_dead_code_is_restarted_on_an_encoder_output():
    torch.manual_seed(0)
    book = Codebook(4, 2)
    z = torch.randn(10, 2) + 10  # far from every code
    codes = book.nearest(z)
    for _ in range(3):
        book.update(*book.statistics(z, codes))
    alive = book.usage >= 1.0
    dead = book.restart(z, below=1.0)
    assert torch.equal(dead, ~alive) and dead.any()
    for row in book.weight.detach()[dead]:
        assert any(torch.equal(row, candidate) for candidate in z)  # moved onto an output
    assert (book.usage[dead] == 1.0).all()  # and given a fair chance


def test_the_bound_is_below_log_p_x_summed_over_every_code(binary_x):
    """4 x 8 images: L = 2 positions of K = 3 codes, 9 code grids: log p(x) exactly."""
    torch.manual_seed(1)
    shape = {"image_shape": (1, 4, 8), "num_codes": 3, "code_dim": 2, "channels": (3, 4)}
    m, g = make_model("vqvae", **shape), make_guide("vqvae", **shape)
    tie(m, g)
    x = torch.bernoulli(torch.full((6, 32), 0.4))
    grids = torch.cartesian_prod(torch.arange(3), torch.arange(3))  # (9, 2)
    z = m.codebook.lookup(grids).flatten(-2)  # (9, 4)
    logits = m.decoder(z)  # (9, 32)
    log_joint = (x[:, None] * logits - F.softplus(logits)).sum(-1) - 2 * math.log(3)  # (6, 9)
    exact = torch.logsumexp(log_joint, -1)  # (6,)
    with torch.no_grad():
        bound = elbo_terms(m, g, x, batch_size=6)["elbo"]
        codes = encode_codes(g, x).x.long()  # the guide's grid of each point
    picked = log_joint[torch.arange(6), codes[:, 0] * 3 + codes[:, 1]]
    assert bound == pytest.approx(picked.mean().item(), rel=1e-5)
    assert (picked <= exact + 1e-6).all() and picked.mean() < exact.mean()


def test_the_code_prior_fits_by_maximum_likelihood(binary_x):
    m, g = pair(prior="transformer")
    history = fit_code_prior(m, g, binary_x, binary_x[:16], epochs=2, batch_size=16,
                             progress=False)
    assert bool(m.prior_fitted) and history.valid_elbo[-1] > history.valid_elbo[0]
    codes = encode_codes(g, binary_x[:16]).x  # (16, 49)
    prior = CodeSequence(m.prior.net, 8, 49)
    logits = m.prior.net(codes)
    by_hand = torch.log_softmax(logits, -1).gather(-1, codes.long()[..., None]).sum((-2, -1))
    torch.testing.assert_close(prior.log_prob(codes), by_hand)
    assert m.codes().net is m.prior.net  # the VQ-VAE's p(z) is now the fitted one


def test_training_records_codebook_usage_and_ema_restarts(binary_x):
    m, g = pair(ema=True)
    history = fit(m, g, binary_x, epochs=2, batch_size=16, loss=VQELBO(), progress=False)
    for r in history.records:
        assert r["codes_used"] + r["codes_dead"] == 8 and 1 <= r["code_perplexity"] <= 8
    assert "eager: its codebook updates" in history.fast_path or "no lean" in history.fast_path


def test_loss_config_reaches_the_objective_and_bad_options_are_refused():
    from inference.config import RunConfig, make_loss

    loss = make_loss(RunConfig(loss="vq", loss_config={"restart_below": None}))
    assert loss.restart_below is None
    assert make_loss(RunConfig(loss="vq", loss_config={"beta": 0.5})).beta == 0.5
    with pytest.raises(ValueError, match="does not take loss_config"):
        make_loss(RunConfig(loss="trace", loss_config={"bogus": 1}))
    with pytest.raises(ValueError, match="cannot set num_particles: use its own flag"):
        make_loss(RunConfig(loss="iwae", loss_config={"num_particles": 3}))
    with pytest.raises(ValueError, match="loss_config must be a JSON object"):
        RunConfig(loss_config=[1])


def test_vae_train_runs_both_stages_and_vae_eval_reports_the_bound(tmp_path, capsys):
    from inference.cli import eval_main, plot_main, sample_main, train_main

    out = tmp_path / "vq"
    config = '{"prior": "transformer", "num_codes": 16, "code_dim": 4, "channels": [4, 8]}'
    assert train_main(["--model", "vqvae", "--guide", "vqvae", "--loss", "vq", "--model-config",
                       config, "--guide-config", '{"num_codes": 16, "code_dim": 4, '
                       '"channels": [4, 8], "ema": true}', "--prior-epochs", "1",
                       "--epochs", "1", "--train-limit", "300", "--valid", "100", "--quiet",
                       "--loss-config", '{"restart_below": null}', "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "code prior: 1 epoch of maximum likelihood" in printed
    # the prior has no latent site: its score is log p(codes), not an ELBO
    vq_part, prior_part = printed.split("code prior: 1 epoch")
    assert "epoch 1: train ELBO" in vq_part and "epoch 1: valid log-likelihood" in prior_part
    assert "ELBO" not in prior_part.split("bits per position")[0]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(out / "tensorboard"))
    board.Reload()
    assert {"codes_used", "codes_dead", "code_perplexity"} <= set(board.Tags()["scalars"])
    assert "bits per position (epoch 1)" in printed
    assert "codes_used" in (out / "metrics.jsonl").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    # the final bound is the fitted prior's: its rate is no longer L log K = 49 log 16
    assert metrics["test_uniform_prior"]["kl"] == pytest.approx(49 * math.log(16), rel=1e-5)
    fitted = metrics["prior"]["test"]["kl"]
    assert metrics["test_kl"] == fitted != metrics["test_uniform_prior"]["kl"]
    assert printed.splitlines()[-1].startswith(f"final test ELBO: {metrics['test_elbo']:.2f}")
    assert "and its code prior fitted for 1 epoch;" in printed
    assert eval_main([str(out), "--limit", "50", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "the guide is a point mass" in printed and "K = 1" in printed
    assert "Pareto" not in printed  # one weight per point: no tail to fit
    assert "bits per latent position" in printed and "NLL bound" in printed
    scored = json.loads((out / "eval-test-K1-random50.json").read_text())
    assert 1 <= scored["codes_used"] <= 16 and "active units" not in printed  # 49 × 4 coords
    assert f"codes used      {scored['codes_used']} of 16 (at 49 positions)" in printed
    assert sample_main([str(out), "-n", "4"]) == 0
    assert plot_main([str(out), "codebook", "--out", str(tmp_path / "fig")]) == 0
    assert (tmp_path / "fig" / "codebook.png").stat().st_size > 1000
