"""Analytic oracles: the linear-Gaussian model has an exact evidence and posterior.

For q(z | x) = N(m, S) and p(x | z) = N(W z + b, σ² I), p(z) = N(0, I):

    ELBO(x) = -D/2 log(2πσ²) - (|x - W m - b|² + tr(W S Wᵀ)) / (2σ²)
              - ½ (tr S + |m|² - d - log det S)
"""

import math

import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from guides import make_guide
from inference import evaluate_elbo, fit, importance_sample

D, d, N = 6, 2, 8


@pytest.fixture
def pair(linear_model):
    model = linear_model
    with torch.no_grad():
        x = model.marginal().sample((N,))  # (N, D) drawn from the model itself
    return model, x


def closed_form_elbo(model, guide, x):
    """Per-point ELBO for a Gaussian guide, from the formula above."""
    m, cov = guide_moments(guide, x)  # (N, d), (d, d)
    w, b, s2 = model.weight, model.bias, model.noise ** 2
    resid = ((x - m @ w.T - b) ** 2).sum(-1)
    recon = -D / 2 * math.log(2 * math.pi) - D / 2 * s2.log() - (
        resid + torch.trace(w @ cov @ w.T)) / (2 * s2)
    kl = 0.5 * (torch.trace(cov) + (m ** 2).sum(-1) - d - torch.logdet(cov))
    return recon - kl


def guide_moments(guide, x):
    """Mean (N, d) and covariance (d, d), shared by all points, of the guide's q(z | x)."""
    fn = poutine.trace(guide).get_trace(x).nodes["z"]["fn"]
    if hasattr(fn, "covariance_matrix"):
        return fn.loc, fn.covariance_matrix[0]
    return fn.mean, torch.diag(fn.variance[0])


def test_exact_posterior_gives_exact_evidence_for_every_point(pair):
    model, x = pair
    guide = make_guide("linear_gaussian", x_dim=D, z_dim=d).double().set_posterior(model)
    exact = model.marginal().log_prob(x)  # (N,)
    torch.testing.assert_close(closed_form_elbo(model, guide, x), exact)
    for loss in (Trace_ELBO(), TraceMeanField_ELBO()):  # the batch mean, for any draw of z
        assert evaluate_elbo(model, guide, x, loss=loss) == pytest.approx(exact.mean().item(),
                                                                          abs=1e-9)
    # log p(x, z) - log q(z | x) = log p(x) for every point and every draw of z
    per_point = importance_sample(model, guide, x, num_samples=3)
    torch.testing.assert_close(per_point.elbo, exact, atol=1e-9, rtol=0)


@pytest.mark.parametrize("loss_cls", [Trace_ELBO, TraceMeanField_ELBO])
def test_poor_diagonal_guide_matches_closed_form_within_mc_error(pair, loss_cls):
    model, x = pair
    guide = make_guide("linear_gaussian", x_dim=D, z_dim=d, covariance="diagonal").double()
    guide.set_posterior(model)
    with torch.no_grad():
        guide.bias.add_(0.5)  # a biased mean on top of a mean-field covariance
    truth = closed_form_elbo(model, guide, x).mean().item()
    assert truth < model.marginal().log_prob(x).mean().item() - 0.1  # the guide is poor
    singles = torch.tensor([evaluate_elbo(model, guide, x, loss=loss_cls()) for _ in range(200)])
    k = 20_000
    many = evaluate_elbo(model, guide, x, loss=loss_cls(
        num_particles=k, vectorize_particles=True, max_plate_nesting=1))
    stderr = singles.std().item() / math.sqrt(k)
    assert abs(many - truth) < 4 * stderr + 1e-9, (many, truth, stderr)
    assert abs(singles.mean().item() - truth) < 4 * singles.std().item() / math.sqrt(200)


def test_svi_recovers_the_exact_posterior(pair):
    """Trained with the model held fixed, the full-covariance linear guide converges to p(z|x)."""
    model, x = pair
    torch.manual_seed(0)
    data = model.marginal().sample((512,))
    for p in model.parameters():
        p.requires_grad_(False)
    guide = make_guide("linear_gaussian", x_dim=D, z_dim=d).double()
    fit(model, guide, data, loss=TraceMeanField_ELBO(), epochs=300, batch_size=128, lr=2e-2,
        progress=False)
    a, c, cov = model.posterior_params()
    torch.testing.assert_close(guide.weight, a, atol=0.05, rtol=0)
    torch.testing.assert_close(guide.bias, c, atol=0.05, rtol=0)
    torch.testing.assert_close(guide.scale_tril @ guide.scale_tril.T, cov, atol=0.02, rtol=0)
