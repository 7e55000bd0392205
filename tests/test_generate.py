"""Generation runs the model itself with x=None; reconstruction replays it on the guide."""

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule

from guides import make_guide
from inference import reconstruct, sample
from models import data_plate, make_model
from models.nets import StandardNormal


def pinned_linear_model():
    torch.manual_seed(0)
    model = make_model("linear_gaussian", x_dim=5, z_dim=2, init_noise=0.3,
                       init_weight_scale=1.0).double()
    with torch.no_grad():
        model.bias.copy_(torch.arange(5.0))
    return model


def test_samples_follow_the_model_marginal():
    model = pinned_linear_model()
    x = sample(model, 40_000)["x"]  # (n, D)
    assert x.shape == (40_000, 5)
    marginal = model.marginal()
    torch.testing.assert_close(x.mean(0), marginal.mean, atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), marginal.covariance_matrix, atol=0.06, rtol=0)


def test_samples_are_binary_reproducible_and_means_are_probabilities():
    model = make_model("bernoulli_mlp", z_dim=3, hidden=(16,))
    pyro.set_rng_seed(5)
    a = sample(model, 10)
    pyro.set_rng_seed(5)
    b = sample(model, 10)
    assert a["z"].shape == (10, 3) and a["x"].shape == (10, 784)
    assert torch.equal(a["x"], b["x"]) and set(a["x"].unique().tolist()) <= {0.0, 1.0}
    probs = sample(model, 10, mean=True)["x"]
    assert probs.shape == (10, 784) and 0 < probs.min() and probs.max() < 1


class LabelShift(PyroModule):
    """x | z, y ~ Normal(z + y, 0.01): the label moves every pixel."""

    def __init__(self):
        super().__init__()
        self.prior = StandardNormal(1)

    def forward(self, x=None, y=None):
        with data_plate(x, y):
            z = pyro.sample("z", self.prior())
            loc = z.expand(*z.shape[:-1], 3) + y.unsqueeze(-1).to(z.dtype)  # (..., N, 3)
            pyro.sample("x", dist.Normal(loc, 0.01).to_event(1), obs=x)


def test_labels_give_n_draws_per_label():
    y = torch.tensor([0, 10, 20])
    out = sample(LabelShift(), 4000, y=y)
    assert out["x"].shape == (4000, 3, 3) and out["z"].shape == (4000, 3, 1)
    means = out["x"].mean(dim=(0, 2))  # (labels,)
    torch.testing.assert_close(means, y.float(), atol=0.1, rtol=0)


def test_reconstruction_replays_the_model_on_the_guide():
    model = pinned_linear_model()
    guide = make_guide("linear_gaussian", x_dim=5, z_dim=2, covariance="diagonal").double()
    guide.set_posterior(model)
    with torch.no_grad():
        guide.scale = torch.full((2,), 1e-9, dtype=torch.float64)  # z = A x + c
    x = torch.randn(7, 5, dtype=torch.float64)
    a, c, _ = model.posterior_params()
    expected = (x @ a.T + c) @ model.weight.T + model.bias  # decoder mean at the posterior mean
    torch.testing.assert_close(reconstruct(model, guide, x), expected)
    assert reconstruct(model, guide, x, mean=False).shape == (7, 5)

