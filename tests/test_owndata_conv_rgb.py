"""The conv_rgb pair: its discretised logistic against hand-written torch on the same draws,
at several points and particles, and the pair's shapes for 32x32 and 64x64 colour images."""

import pyro
import pyro.poutine as poutine
import pytest
import torch

from guides import make_guide
from inference import check_pair
from models import make_model
from models.conv_rgb import DiscretizedLogistic, default_channels

LEVELS = torch.arange(256, dtype=torch.float64) / 255


def reference_log_prob(x, loc, scale):
    """PixelCNN++'s mass of the bin of x, written out in float64 with the logistic CDF (left
    of the mode) and survival function (right of it), so that the tails do not cancel."""
    x, loc, scale = (t.double() for t in (x, loc, scale))
    cdf = lambda v: torch.sigmoid((v - loc) / scale)  # noqa: E731
    sf = lambda v: torch.sigmoid((loc - v) / scale)  # noqa: E731
    top, bottom = x > 1 - 1 / 510, x < 1 / 510
    left = torch.where(top, 1.0, cdf(x + 1 / 510)) - torch.where(bottom, 0.0, cdf(x - 1 / 510))
    right = torch.where(bottom, 1.0, sf(x - 1 / 510)) - torch.where(top, 0.0, sf(x + 1 / 510))
    return torch.where(x <= loc, left, right).log()


def test_the_256_masses_sum_to_one_at_distinct_parameters():
    loc = torch.tensor([-0.3, 0.0, 0.21, 0.5, 0.93, 1.4], dtype=torch.float64)
    scale = torch.tensor([0.02, 0.3, 0.05, 0.01, 0.2, 0.1], dtype=torch.float64)
    mass = DiscretizedLogistic(loc, scale).log_prob(LEVELS[:, None]).exp()  # (256, 6)
    assert torch.allclose(mass.sum(0), torch.ones(6, dtype=torch.float64), atol=1e-9)
    mean = DiscretizedLogistic(loc, scale).mean
    assert torch.allclose(mean, (mass * LEVELS[:, None]).sum(0), atol=1e-9)


def test_log_prob_matches_the_hand_written_mass_for_k_particles_of_n_pixels():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (4, 5), generator=g) / 255  # N = 4 points of D = 5 pixels
    x[0, 0], x[1, 1] = 0.0, 1.0  # the two edge bins
    loc = torch.rand(3, 4, 5, generator=g) * 1.2 - 0.1  # K = 3 particles
    scale = torch.rand(3, 4, 5, generator=g) * 0.2 + 0.02
    lp = DiscretizedLogistic(loc, scale).to_event(1).log_prob(x)
    assert lp.shape == (3, 4)
    want = reference_log_prob(x.expand(3, 4, 5), loc, scale).sum(-1)
    assert torch.allclose(lp.double(), want, rtol=1e-5, atol=0)  # float32's precision
    exact = DiscretizedLogistic(loc.double(), scale.double()).to_event(1).log_prob(x.double())
    assert torch.allclose(exact, want, rtol=1e-10, atol=0)  # the same sum in float64
    assert len({round(v, 3) for v in lp.flatten().tolist()}) == 12  # 12 distinct values


def test_a_tiny_scale_keeps_the_log_prob_finite_and_its_gradient_too():
    loc = torch.tensor([0.5, 0.2], requires_grad=True)
    lp = DiscretizedLogistic(loc, torch.tensor([1e-4, 1e-4])).log_prob(torch.tensor([0.9, 0.2]))
    lp.sum().backward()
    assert torch.isfinite(lp).all() and torch.isfinite(loc.grad).all()
    assert lp[0] < -100 and lp[1] > -1e-3  # far from its bin: tiny; on it: nearly all mass


@pytest.mark.parametrize("size, stages, scale", [(28, 2, "channel"), (32, 3, "pixel"),
                                                 (64, 4, "channel")])
def test_the_pair_fits_grey_and_colour_images_of_the_chosen_size(size, stages, scale):
    assert len(default_channels(size, size)) == stages
    shape = (3, size, size) if size != 28 else (1, size, size)
    model = make_model("conv_rgb", image_shape=shape, z_dim=4, hidden=(16,), scale=scale)
    guide = make_guide("conv_rgb", image_shape=shape, z_dim=4, hidden=(16,))
    x = torch.randint(0, 256, (3, model.x_dim)) / 255
    check_pair(model, guide, x)
    tr = poutine.trace(poutine.replay(model, poutine.trace(guide).get_trace(x))).get_trace(x)
    tr.compute_log_prob()
    z = tr.nodes["z"]["value"]
    assert z.shape == (3, 4)
    loc, scale = model.pixels(z)  # (3, D) each, the decoder on the same draws
    want = reference_log_prob(x, loc, scale).sum(-1)
    assert torch.allclose(tr.nodes["x"]["log_prob"].double(), want, rtol=1e-4)


def test_a_size_the_stages_cannot_halve_is_one_line():
    with pytest.raises(ValueError, match="divisible by 8, got 36x36; pick --image-size 32"):
        make_model("conv_rgb", image_shape=(3, 36, 36), channels=(8, 16, 32))
    with pytest.raises(ValueError, match="do not fit image_shape"):
        make_model("conv_rgb", image_shape=(3, 32, 32), x_dim=784)


def test_samples_lie_on_the_256_levels():
    pyro.set_rng_seed(0)
    d = DiscretizedLogistic(torch.full((1000,), 0.4), torch.full((1000,), 0.1))
    s = d.sample()
    assert torch.allclose(s * 255, (s * 255).round()) and 0.35 < s.mean() < 0.45
