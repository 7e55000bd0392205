"""β-VAE and KL annealing as a handler: exact values against plain traces."""

import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from torch.distributions import kl_divergence

from guides import make_guide
from inference import fit
from inference.capture import Captured
from inference.handlers import BetaMessenger, Cyclical, LinearWarmup, beta, parse_anneal
from inference.objectives import ParticleELBO
from models import make_model

BETAS = [0.0, 0.5, 1.0, 4.0]


@pytest.fixture
def pair():
    torch.manual_seed(0)
    model, guide = make_model("bernoulli_mlp", x_dim=12, z_dim=3, hidden=(8,)), make_guide(
        "gaussian_mlp", x_dim=12, z_dim=3, hidden=(8,))
    x = torch.bernoulli(torch.full((5, 12), 0.4))
    return model, guide, x


def plain_terms(model, guide, x, seed):
    """log p(x | z), log p(z), log q(z | x) and the closed-form KL, from unwrapped traces."""
    pyro.set_rng_seed(seed)
    g = poutine.trace(guide).get_trace(x)
    m = poutine.trace(poutine.replay(model, trace=g)).get_trace(x)
    kl = kl_divergence(g.nodes["z"]["fn"], m.nodes["z"]["fn"]).sum()
    return (m.nodes["x"]["fn"].log_prob(x).sum(), m.nodes["z"]["fn"].log_prob(
        g.nodes["z"]["value"]).sum(), g.nodes["z"]["fn"].log_prob(g.nodes["z"]["value"]).sum(), kl)


@pytest.mark.parametrize("b", BETAS)
def test_trace_elbo_of_wrapped_pair_is_reconstruction_plus_beta_times_latent_terms(pair, b):
    model, guide, x = pair
    log_px, log_pz, log_qz, _ = plain_terms(model, guide, x, seed=7)
    pyro.set_rng_seed(7)
    got = Trace_ELBO().differentiable_loss(beta(model, b), beta(guide, b), x)
    torch.testing.assert_close(got, -(log_px + b * (log_pz - log_qz)))


@pytest.mark.parametrize("b", BETAS)
def test_meanfield_elbo_of_wrapped_pair_is_reconstruction_minus_beta_kl(pair, b):
    model, guide, x = pair
    log_px, _, _, kl = plain_terms(model, guide, x, seed=3)
    pyro.set_rng_seed(3)
    got = TraceMeanField_ELBO().differentiable_loss(beta(model, b), beta(guide, b), x)
    torch.testing.assert_close(got, -(log_px - b * kl))
    assert kl > 0.1  # the KL term is really there


def test_beta_one_is_the_unwrapped_pair_exactly(pair):
    model, guide, x = pair
    for loss in (Trace_ELBO(), TraceMeanField_ELBO()):
        pyro.set_rng_seed(1)
        plain = loss.differentiable_loss(model, guide, x)
        pyro.set_rng_seed(1)
        assert loss.differentiable_loss(beta(model, 1.0), beta(guide, 1.0), x) == plain
        pyro.set_rng_seed(1)
        with beta(None, torch.tensor(1.0)):  # the context form, β as a tensor
            assert loss.differentiable_loss(model, guide, x) == plain


def test_beta_rejects_what_poutine_scale_cannot_mean():
    with pytest.raises(ValueError, match="finite number ≥ 0"):
        BetaMessenger(-1.0)
    with pytest.raises(ValueError, match="finite number ≥ 0"):
        BetaMessenger(1.0).set(float("nan"))
    with pytest.raises(ValueError, match="scale > 0"):
        poutine.scale(scale=0.0)  # why we have our own: β = 0 is a meaningful objective


def test_captured_graph_reads_beta_as_an_input(pair):
    """A graph captured at one β gives the eager value at another β, without recapturing."""
    model, guide, x = pair
    handler = BetaMessenger(torch.tensor(0.5))
    captured = Captured(ParticleELBO().differentiable_loss, model, guide, capture_after=1,
                        live=[(handler, "beta")])
    with handler, pyro.validation_enabled(False):  # as in fit's hot loop
        captured(x, None)
    assert len(captured.graphs) == 1 and None not in captured.graphs.values(), captured.note
    for b in (0.0, 2.0, 4.0):
        handler.set(b)
        with handler, pyro.validation_enabled(False):
            torch.manual_seed(11)
            got = captured(x, None)
            torch.manual_seed(11)
            want = captured.eager(x, None)
        torch.testing.assert_close(got, want)
    assert len(captured.graphs) == 1


def test_schedules():
    warm = LinearWarmup(4, end=2.0)
    assert [warm(p) for p in (0, 1, 2, 4, 9)] == [0.0, 0.5, 1.0, 2.0, 2.0]
    cyc = Cyclical(4, ratio=0.5)
    assert [cyc(p) for p in (0, 1, 2, 3, 4, 5)] == [0.0, 0.5, 1.0, 1.0, 0.0, 0.5]
    assert parse_anneal("none") is None
    assert parse_anneal("linear:10", end=4.0)(5) == 2.0
    assert parse_anneal("cyclical:4:0.25")(0.5) == 0.5
    for bad in ("linear", "cyclical:0", "sigmoid:3", "linear:x"):
        with pytest.raises(ValueError, match="annealing|needs"):
            parse_anneal(bad)


def test_fit_anneals_training_but_scores_at_beta_one(linear_model):
    """With the exact posterior as guide, the unscaled ELBO is log p(x) for every draw; a
    β-scaled one would not be. lr = 0 keeps the pair fixed while β anneals."""
    model = linear_model
    guide = make_guide("linear_gaussian", x_dim=6, z_dim=2).double().set_posterior(model)
    with torch.no_grad():
        x = model.marginal().sample((40,))
    exact = model.marginal().log_prob(x).mean().item()
    history = fit(model, guide, x, valid=x, epochs=2, batch_size=10, lr=0.0, progress=False,
                  beta=LinearWarmup(2, end=4.0), train_eval_points=0)
    assert [r["beta"] for r in history.records] == pytest.approx([1.5, 3.5])
    for r in history.records:
        assert r["valid_elbo"] == pytest.approx(exact, abs=1e-9)
        assert abs(r["objective"] - exact) > 0.1  # training saw the β-scaled objective
