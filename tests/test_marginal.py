"""Importance-weighted log p(x): exact where the guide is the posterior, honest elsewhere."""

import math

import pyro
import pytest
import torch
from pyro.nn import PyroModule

from guides import make_guide
from inference import evaluate_elbo
from inference.marginal import importance_sample, iw_log_likelihood
from models import data_plate
from models.distributions import DiagNormal
from models.nets import StandardNormal

D, d, N = 6, 2, 10


@pytest.fixture
def linear(linear_model):
    model = linear_model
    with torch.no_grad():
        x = model.marginal().sample((N,))
    return model, x, model.marginal().log_prob(x)


def poor_guide(model):
    guide = make_guide("linear_gaussian", x_dim=D, z_dim=d, covariance="diagonal").double()
    guide.set_posterior(model)
    with torch.no_grad():
        guide.bias.add_(0.5)  # biased mean on top of a mean-field covariance
    return guide


@pytest.mark.parametrize("k", [1, 3, 50, 1000])
def test_exact_posterior_gives_exact_log_px_at_any_k(linear, k):
    model, x, exact = linear
    guide = make_guide("linear_gaussian", x_dim=D, z_dim=d).double().set_posterior(model)
    torch.testing.assert_close(iw_log_likelihood(model, guide, x, num_samples=k), exact,
                               atol=1e-10, rtol=0)


def test_poor_guide_is_below_rises_with_k_and_reaches_the_truth(linear):
    model, _, _ = linear
    guide = poor_guide(model)
    x = model.marginal().sample((500,))  # enough points that the mean over them is sharp
    exact = model.marginal().log_prob(x)
    gaps = []
    for k in (1, 10, 100, 1000, 5000):
        s = importance_sample(model, guide, x, num_samples=k)
        gaps.append((s.log_likelihood - exact).mean().item())
    assert gaps[0] < -1.0  # K=1 is the ELBO: well below the truth
    assert all(a < b for a, b in zip(gaps, gaps[1:], strict=False)), gaps  # rises with K
    se = s.mc_stderr.pow(2).sum().sqrt().item() / len(x)  # of the mean gap, at K=5000
    assert abs(gaps[-1]) < 4 * se, (gaps, se)


@pytest.mark.parametrize("chunk,batch", [(16, None), (48, None), (200, 4), (None, 4)])
def test_chunking_does_not_change_the_estimates(linear, chunk, batch):
    model, x, _ = linear
    guide = poor_guide(model)
    pyro.set_rng_seed(11)
    whole, lw = iw_log_likelihood(model, guide, x, num_samples=400, chunk_size=400,
                                  batch_size=batch, return_log_weights=True)
    pyro.set_rng_seed(11)
    chunked, lw_chunked = iw_log_likelihood(model, guide, x, num_samples=400, chunk_size=chunk,
                                            batch_size=batch, return_log_weights=True)
    torch.testing.assert_close(chunked, whole, atol=1e-10, rtol=0)
    torch.testing.assert_close(lw_chunked, lw)


def test_log_weights_are_per_particle_and_point(linear):
    model, x, _ = linear
    est, lw = iw_log_likelihood(model, poor_guide(model), x, num_samples=300,
                                return_log_weights=True)
    assert lw.shape == (300, N)
    torch.testing.assert_close(torch.logsumexp(lw, 0) - math.log(300), est)


def test_never_below_the_elbo(linear):
    model, x, _ = linear
    guide = poor_guide(model)
    s = importance_sample(model, guide, x, num_samples=2000)
    assert (s.log_likelihood >= s.elbo).all()  # Jensen, on the same draws
    elbo = evaluate_elbo(model, guide, x)  # an independent one-sample ELBO
    singles = torch.tensor([evaluate_elbo(model, guide, x) for _ in range(100)])
    assert s.log_likelihood.mean().item() > elbo - 4 * singles.std().item()
    assert s.elbo.mean().item() == pytest.approx(singles.mean().item(),
                                                 abs=4 * singles.std().item() / 10)


class ChainModel(PyroModule):
    """z2 ~ N(0, 1); z1 | z2 ~ N(a z2, s1²); x | z1 ~ N(b z1, s2² I): a hierarchical oracle."""

    a, s1, s2 = 0.8, 0.6, 0.5

    def __init__(self):
        super().__init__()
        self.b = torch.tensor([1.0, -0.5], dtype=torch.float64)
        self.prior = StandardNormal(1).double()

    def forward(self, x=None, y=None):
        with data_plate(x, y):
            z2 = pyro.sample("z2", self.prior())
            z1 = pyro.sample("z1", DiagNormal(self.a * z2, torch.full_like(z2, self.s1)))
            pyro.sample("x", DiagNormal(z1 * self.b, torch.full((2,), self.s2).double()), obs=x)

    def joint_cov(self):
        """Covariance of (z2, z1, x1, x2)."""
        a, s1, s2, b = self.a, self.s1, self.s2, self.b
        v1 = a**2 + s1**2
        cov = torch.zeros(4, 4, dtype=torch.float64)
        cov[0, 0], cov[0, 1], cov[1, 1] = 1.0, a, v1
        cov[0, 2:], cov[1, 2:] = a * b, v1 * b
        cov[2:, 2:] = v1 * torch.outer(b, b) + s2**2 * torch.eye(2, dtype=torch.float64)
        return torch.triu(cov) + torch.triu(cov, 1).T


def condition(cov, target, given):
    """Gaussian conditioning: (coefficients, variance) of cov[target] given cov[given]."""
    coef = torch.linalg.solve(cov[given][:, given], cov[given][:, target]).T
    var = cov[target][:, target] - coef @ cov[given][:, target]
    return coef, var


class ChainPosterior(PyroModule):
    """The exact posterior p(z2 | x) p(z1 | z2, x) of :class:`ChainModel`."""

    def __init__(self, model):
        super().__init__()
        cov = model.joint_cov()
        self.c2, self.v2 = condition(cov, [0], [2, 3])
        self.c1, self.v1 = condition(cov, [1], [0, 2, 3])

    def forward(self, x, y=None):
        with data_plate(x, y):
            z2 = pyro.sample("z2", DiagNormal(x @ self.c2.T, self.v2.sqrt()[0].expand(1)))
            given = torch.cat([z2, x.expand(*z2.shape[:-1], 2)], -1)  # (..., N, 3)
            pyro.sample("z1", DiagNormal(given @ self.c1.T, self.v1.sqrt()[0].expand(1)))


def test_hierarchical_pair_with_exact_posterior_is_exact():
    model = ChainModel()
    guide = ChainPosterior(model)
    x = torch.distributions.MultivariateNormal(
        torch.zeros(2, dtype=torch.float64), model.joint_cov()[2:, 2:]).sample((N,))
    exact = torch.distributions.MultivariateNormal(
        torch.zeros(2, dtype=torch.float64), model.joint_cov()[2:, 2:]).log_prob(x)
    for k in (1, 64):
        torch.testing.assert_close(iw_log_likelihood(model, guide, x, num_samples=k), exact,
                                   atol=1e-10, rtol=0)
    s = importance_sample(model, guide, x, num_samples=64)
    assert set(s.latent_means) == {"z1", "z2"} and s.latent_means["z1"].shape == (N, 1)


class ShiftModel(PyroModule):
    """x | z, y ~ N(z 1 + y, I), z ~ N(0, 1): y only conditions, log p(x | y) is exact."""

    def __init__(self):
        super().__init__()
        self.prior = StandardNormal(1).double()

    def forward(self, x=None, y=None):
        with data_plate(x, y):
            z = pyro.sample("z", self.prior())
            loc = z.expand(*z.shape[:-1], 3) + y.unsqueeze(-1)
            pyro.sample("x", DiagNormal(loc, torch.ones(3, dtype=torch.float64)), obs=x)


class ShiftPosterior(PyroModule):
    def forward(self, x, y=None):
        with data_plate(x, y):  # z | x, y ~ N(sum(x - y) / 4, 1 / 4)
            loc = (x - y.unsqueeze(-1)).sum(-1, keepdim=True) / 4
            pyro.sample("z", DiagNormal(loc, torch.full_like(loc, 0.5)))


def test_conditional_pair_scores_log_p_x_given_y():
    y = torch.tensor([0.0, 2.0, -1.0], dtype=torch.float64)
    x = torch.randn(3, 3, dtype=torch.float64) + y.unsqueeze(-1)
    cov = torch.ones(3, 3, dtype=torch.float64) + torch.eye(3, dtype=torch.float64)
    exact = torch.distributions.MultivariateNormal(y.unsqueeze(-1).expand(3, 3), cov).log_prob(x)
    got = iw_log_likelihood(ShiftModel(), ShiftPosterior(), x, y=y, num_samples=7)
    torch.testing.assert_close(got, exact, atol=1e-10, rtol=0)
