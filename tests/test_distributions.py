"""The shared distributions equal the textbook ones in density, KL, sampling and support."""

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from torch.distributions import kl_divergence

from models.distributions import BernoulliPixels, DiagNormal


def test_diag_normal_log_prob_matches_normal_under_particle_plates():
    loc, scale = torch.randn(5, 3), torch.rand(5, 3) + 0.2
    reference = dist.Normal(loc, scale).to_event(1)
    ours = DiagNormal(loc, scale)
    for value in (torch.randn(5, 3), torch.randn(7, 5, 3), torch.randn(3)):
        torch.testing.assert_close(ours.log_prob(value), reference.log_prob(value))
    expanded = ours.expand((7, 5))
    assert expanded.batch_shape == (7, 5) and expanded.event_shape == (3,)
    torch.testing.assert_close(expanded.log_prob(torch.randn(5, 3)).shape, torch.Size([7, 5]))

    def program():
        with pyro.plate("particles", 7, dim=-2), pyro.plate("data", 5, dim=-1):
            return pyro.sample("z", DiagNormal(loc, scale))

    tr = poutine.trace(program).get_trace()
    tr.compute_log_prob()
    z = tr.nodes["z"]["value"]
    assert z.shape == (7, 5, 3)
    torch.testing.assert_close(tr.nodes["z"]["log_prob"], reference.log_prob(z))


def test_diag_normal_keeps_closed_form_kl_and_reparameterized_draws():
    p = DiagNormal(torch.randn(4, 3), torch.rand(4, 3) + 0.5)
    q = DiagNormal(torch.zeros(3), torch.ones(3)).expand((4,))
    expected = kl_divergence(dist.Normal(p._loc, p._scale),
                             dist.Normal(torch.zeros(3), torch.ones(3))).sum(-1)
    torch.testing.assert_close(kl_divergence(p, q), expected)
    loc = torch.zeros(3, requires_grad=True)
    DiagNormal(loc, torch.ones(3)).rsample().sum().backward()
    assert loc.grad is not None and p.has_rsample


def test_bernoulli_pixels_matches_bernoulli_and_checks_support():
    logits = torch.randn(6, 10)
    x = torch.bernoulli(torch.full((6, 10), 0.5))
    reference = dist.Bernoulli(logits=logits).to_event(1)
    ours = BernoulliPixels(logits)
    torch.testing.assert_close(ours.log_prob(x), reference.log_prob(x))
    wide = x.expand(4, 6, 10)
    torch.testing.assert_close(ours.log_prob(wide), reference.log_prob(wide))
    torch.testing.assert_close(ours.mean, torch.sigmoid(logits))
    assert ours.expand((3, 6)).log_prob(x).shape == (3, 6)
    with pytest.raises(ValueError):
        BernoulliPixels(logits, validate_args=True).log_prob(x * 0.5)


def test_standard_diag_normal_and_its_closed_form_kl():
    from models.nets import StandardNormal

    prior = StandardNormal(3)()
    z = torch.randn(4, 2, 3)
    reference = dist.Normal(torch.zeros(3), torch.ones(3)).to_event(1)
    torch.testing.assert_close(prior.log_prob(z), reference.log_prob(z))
    loc, scale = torch.randn(2, 3), torch.rand(2, 3) + 0.3
    q = DiagNormal(loc, scale)
    generic = kl_divergence(dist.Normal(loc, scale), dist.Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(kl_divergence(q, prior.expand((2,))), generic)
    other = DiagNormal(torch.randn(3), torch.rand(3) + 0.5)
    generic = kl_divergence(dist.Normal(loc, scale), dist.Normal(other._loc, other._scale)).sum(-1)
    torch.testing.assert_close(kl_divergence(q, other.expand((2,))), generic)
    assert kl_divergence(q.expand((5, 2)), prior.expand((5, 2))).shape == (5, 2)
