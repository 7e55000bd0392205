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


@pytest.mark.parametrize("logit_shape, x_shape", [
    ((4, 5, 7), (5, 7)),      # K particles of N points: the batched matrix-vector product
    ((4, 1, 5, 7), (5, 7)),   # Pyro's extra plate dim with several particles
    ((5, 7), (4, 5, 7)),      # one set of logits, K draws of x
    ((4, 5, 7), (4, 5, 7)),   # both full
])
def test_bernoulli_pixels_without_gradients_equals_the_cross_entropy(logit_shape, x_shape):
    """The evaluation form Σ x·l − softplus(l) gives torch's Bernoulli density, at K = 4
    particles of N = 5 distinct rows, for binary and grey x and for logits large enough
    to saturate softplus (|l| > 20); with gradients the cross-entropy itself is used."""
    torch.manual_seed(0)
    logits = torch.randn(logit_shape) * 12  # many |l| > 20
    for x in (torch.bernoulli(torch.full(x_shape, 0.4)), torch.rand(x_shape)):
        reference = -torch.nn.functional.binary_cross_entropy_with_logits(
            *torch.broadcast_tensors(logits.double(), x.double()), reduction="none").sum(-1)
        with torch.no_grad():
            fast = BernoulliPixels(logits, validate_args=False).log_prob(x)
        assert fast.shape == reference.shape == torch.broadcast_shapes(logit_shape, x_shape)[:-1]
        torch.testing.assert_close(fast.double(), reference, rtol=1e-6, atol=1e-4)
        assert len(set(fast.flatten().tolist())) > 10  # distinct rows, not one value broadcast
        ours, theirs = logits.clone().requires_grad_(), logits.double().requires_grad_()
        slow = BernoulliPixels(ours, validate_args=False).log_prob(x)
        torch.testing.assert_close(slow.double(), reference, rtol=1e-6, atol=1e-4)
        slow.sum().backward()
        (-torch.nn.functional.binary_cross_entropy_with_logits(
            *torch.broadcast_tensors(theirs, x.double()), reduction="sum")).backward()
        torch.testing.assert_close(ours.grad.double(), theirs.grad, rtol=1e-5, atol=1e-6)


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
