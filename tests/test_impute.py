"""Inpainting: masked weights, conditional likelihoods and completions against Gaussian
conditioning on the linear-Gaussian model, where every answer has a closed form."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from guides import make_guide
from inference.impute import (
    ObservePixelsMessenger,
    conditional_log_likelihood,
    impute,
    masked_log_weights,
    masked_pixels,
    quadrant_mask,
    quadrant_nll,
)
from inference.marginal import iw_log_likelihood
from inference.traces import log_weights, particle_dim
from models import make_model
from models.distributions import BernoulliPixels

D, d, N = 6, 2, 5
OBSERVED = torch.tensor([True, False, True, True, False, False])  # coordinates 0, 2, 3 known


@pytest.fixture
def pair(linear_model):
    """The oracle model, N points from it, and a guide that is the exact p(z | x)."""
    with torch.no_grad():
        x = linear_model.marginal().sample((N,))  # (N, D)
    guide = make_guide("linear_gaussian", x_dim=D, z_dim=d).double().set_posterior(linear_model)
    return linear_model, guide, x


def gaussian_conditional(model, x, observed):
    """p(x_mis | x_obs) of the joint marginal N(b, W Wᵀ + σ² I), by the Schur complement."""
    marginal = model.marginal()
    b, c = marginal.mean.detach(), marginal.covariance_matrix.detach()
    o, m = observed, ~observed
    gain = torch.linalg.solve(c[o][:, o], c[o][:, m]).T  # C_mo C_oo⁻¹: (|m|, |o|)
    loc = b[m] + (x[:, o] - b[o]) @ gain.T  # (N, |m|)
    cov = c[m][:, m] - gain @ c[o][:, m]
    return dist.MultivariateNormal(loc, covariance_matrix=(cov + cov.T) / 2)


def observed_posterior_guide(model, observed):
    """A linear guide equal to p(z | x_obs): zero weight on the missing coordinates."""
    w, b, s2 = model.weight.detach()[observed], model.bias.detach()[observed], model.noise**2
    cov = torch.linalg.inv(torch.eye(d, dtype=w.dtype) + w.T @ w / s2.detach())  # (d, d)
    cov = (cov + cov.T) / 2
    a = cov @ w.T / s2.detach()  # (d, |o|)
    guide = make_guide("linear_gaussian", x_dim=D, z_dim=d).double()
    with torch.no_grad():
        guide.weight.zero_()
        guide.weight[:, observed] = a
        guide.bias.copy_(-a @ b)
    guide.scale_tril = torch.linalg.cholesky(cov)
    return guide


def test_all_pixels_observed_gives_the_unmasked_weights_exactly(pair):
    model, guide, x = pair
    dim = particle_dim(model, guide, x, None)
    all_true = torch.ones(N, D, dtype=torch.bool)
    pyro.set_rng_seed(7)
    log_w, log_mis, draws = masked_log_weights(model, guide, x, all_true, None, 40, dim)
    pyro.set_rng_seed(7)
    reference, _, g = log_weights(model, guide, x, None, 40, dim)
    assert torch.equal(draws["z"], g.nodes["z"]["value"])  # the same particles
    torch.testing.assert_close(log_w, reference, atol=1e-12, rtol=0)  # elementwise vs fused
    assert torch.equal(log_mis, torch.zeros(40, N, dtype=x.dtype))


def test_no_pixel_observed_leaves_prior_over_proposal_and_scores_all_of_x(pair):
    model, guide, x = pair
    dim = particle_dim(model, guide, x, None)
    none = torch.zeros(N, D, dtype=torch.bool)
    log_w, log_mis, draws = masked_log_weights(model, guide, x, none, None, 30, dim, fill=0.0)
    z = draws["z"]  # (K, N, d)
    q = dist.MultivariateNormal(guide.bias.detach(), scale_tril=guide.scale_tril.detach())
    expected = dist.Normal(0.0, 1.0).log_prob(z).sum(-1) - q.log_prob(z)  # x̃ = 0: loc = c
    torch.testing.assert_close(log_w, expected, atol=1e-10, rtol=0)
    w, b, s = model.weight.detach(), model.bias.detach(), model.noise.detach()
    lik = dist.Normal(z @ w.T + b, s).log_prob(x).sum(-1)  # log p(x | z_k): (K, N)
    torch.testing.assert_close(log_mis, lik, atol=1e-10, rtol=0)


def test_a_guide_equal_to_p_z_given_x_obs_makes_every_weight_log_p_x_obs(pair):
    model, _, x = pair
    guide = observed_posterior_guide(model, OBSERVED)
    dim = particle_dim(model, guide, x, None)
    log_w, _, _ = masked_log_weights(model, guide, x, OBSERVED.expand(N, D), None, 25, dim)
    marginal = model.marginal()
    cov = marginal.covariance_matrix.detach()[OBSERVED][:, OBSERVED]
    exact = dist.MultivariateNormal(marginal.mean.detach()[OBSERVED], cov).log_prob(x[:, OBSERVED])
    torch.testing.assert_close(log_w, exact.expand(25, N), atol=1e-10, rtol=0)


def test_conditional_log_likelihood_matches_gaussian_conditioning(pair):
    model, full_posterior, x = pair
    exact = gaussian_conditional(model, x, OBSERVED).log_prob(x[:, ~OBSERVED])  # (N,)
    marginal = model.marginal().log_prob(x).detach()
    assert (exact - marginal).abs().min() > 1.0  # conditioning matters: the test can fail
    # exact p(z | x_obs) proposal: only log p(x_mis | z) varies, the estimate is tight
    tight = conditional_log_likelihood(model, observed_posterior_guide(model, OBSERVED), x,
                                       OBSERVED, num_samples=8000, proposal="filled")
    torch.testing.assert_close(tight, exact, atol=0.05, rtol=0)
    # ½ q(z | x) + ½ q(z | x̃) with q twice as wide as p(z | x), so that it covers p(z | x_obs)
    # too: the weights then have a finite variance (with q = p(z | x) they do not)
    full_posterior.scale_tril = 2 * full_posterior.scale_tril.detach()
    est, ess = conditional_log_likelihood(model, full_posterior, x, OBSERVED,
                                          num_samples=20_000, return_ess=True)
    assert ess.min() > 1000
    torch.testing.assert_close(est, exact, atol=0.05, rtol=0)


def test_no_pixel_observed_gives_log_p_x(pair):
    model, _, x = pair
    prior = make_guide("linear_gaussian", x_dim=D, z_dim=d).double()  # q = p(z) as built
    est = conditional_log_likelihood(model, prior, x, torch.zeros(D, dtype=torch.bool),
                                     num_samples=20_000, chunk_size=4096, proposal="filled")
    torch.testing.assert_close(est, model.marginal().log_prob(x).detach(), atol=0.05, rtol=0)


def test_completions_keep_the_given_pixels_and_average_to_the_conditional_mean(pair):
    model, _, x = pair
    x = x[:3]
    prior = make_guide("linear_gaussian", x_dim=D, z_dim=d).double()  # q = p(z) as built
    out = impute(model, prior, x, OBSERVED, num_samples=10_000, num_draws=3000)
    assert out.ess.min() > 200
    assert out.images.shape == (3000, 3, D) and out.latents["z"].shape == (3000, 3, d)
    assert torch.equal(out.images[:, :, OBSERVED], x[:, OBSERVED].expand(3000, 3, 3))
    exact = gaussian_conditional(model, x, OBSERVED).mean  # E[x_mis | x_obs]: (3, |m|)
    got = out.images[:, :, ~OBSERVED].mean(0)
    torch.testing.assert_close(got, exact, atol=0.1, rtol=0)
    # the proposal alone (no weights) decodes to the bias b, far off: the weights did the work
    assert (model.bias.detach()[~OBSERVED] - exact).abs().max() > 0.5


def test_sampled_completions_scatter_like_the_gaussian_conditional(pair):
    model, _, x = pair
    x = x[:3]  # three distinct points, each against its own conditional
    guide = observed_posterior_guide(model, OBSERVED)
    out = impute(model, guide, x, OBSERVED, num_samples=500, num_draws=4000, decode="sample")
    exact = gaussian_conditional(model, x, OBSERVED)
    for n in range(len(x)):
        draws = out.images[:, n, ~OBSERVED]  # (S, |m|)
        torch.testing.assert_close(draws.mean(0), exact.mean[n], atol=0.1, rtol=0)
        torch.testing.assert_close(torch.cov(draws.T), exact.covariance_matrix[n], atol=0.1,
                                   rtol=0)


def test_bernoulli_masking_under_particles_matches_a_hand_count():
    logits, x = torch.randn(4, 3, 784), torch.bernoulli(torch.full((3, 784), 0.4))
    observed = torch.rand(3, 784) < 0.3
    got = masked_pixels(BernoulliPixels(logits).expand((4, 3)), observed).log_prob(x)
    elementwise = dist.Bernoulli(logits=logits).log_prob(x)  # (4, 3, 784)
    torch.testing.assert_close(got, (elementwise * observed).sum(-1))


def test_conditional_and_observed_marginal_add_up_to_log_p_x_on_a_bernoulli_model():
    torch.manual_seed(0)
    model = make_model("bernoulli_mlp", x_dim=16, z_dim=2, hidden=(32,)).double()
    guide = make_guide("gaussian_mlp", x_dim=16, z_dim=2, hidden=(32,)).double()
    x = torch.bernoulli(torch.full((4, 16), 0.3, dtype=torch.float64))
    given = quadrant_mask(2, (4, 4))
    total = iw_log_likelihood(model, guide, x, num_samples=4000)  # log p(x)
    log_w, _, _ = masked_log_weights(model, guide, x, given.expand(4, 16), None, 4000, -2)
    observed_part = torch.logsumexp(log_w, 0) - math.log(4000)  # log p(x_given)
    cond = conditional_log_likelihood(model, guide, x, given, num_samples=4000)
    assert (total - observed_part).abs().min() > 1  # both parts matter
    torch.testing.assert_close(cond + observed_part, total, atol=0.15, rtol=0)
    nll = quadrant_nll(model, guide, x, quadrants=(2,), num_samples=4000, image_shape=(4, 4))
    torch.testing.assert_close(nll[2], -cond, atol=0.05, rtol=0)


def pyro_example_given(n: int) -> torch.Tensor:
    """The given pixels as Pyro's examples/cvae/mnist.py MaskImages builds them."""
    out = torch.zeros(28, 28)
    out[14:, :14] = -1
    if n == 2:
        out[:, :14] = -1
    if n == 3:
        out[:14, :] = -1
    return (out == -1).reshape(-1)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_quadrant_masks_follow_pyros_cvae_example(n):
    mask = quadrant_mask(n)
    assert torch.equal(mask, pyro_example_given(n))
    assert mask.sum() == 196 * n and not mask.reshape(28, 28)[14:, 14:].any()


def test_bad_masks_are_rejected_with_the_alternative_named():
    with pytest.raises(ValueError, match="poutine.mask"):
        ObservePixelsMessenger(torch.ones(3, 784))
    with pytest.raises(ValueError, match="poutine.mask"):
        masked_pixels(dist.Normal(torch.zeros(3), 1.0), torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="1, 2 or 3"):
        quadrant_mask(4)
    assert math.isclose(quadrant_mask(3).float().mean().item(), 0.75)


def test_mixture_proposal_needs_an_even_number_of_particles(pair):
    model, guide, x = pair
    with pytest.raises(ValueError, match="positive multiple of 2 with proposal='mixture'"):
        conditional_log_likelihood(model, guide, x, OBSERVED, num_samples=3)
