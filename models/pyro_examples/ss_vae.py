"""The semi-supervised M2 of Pyro's ``examples/vae/ss_vae_M2.py`` (Kingma et al. 2014,
"Semi-supervised learning with deep generative models"), in its style.

Generative story and variational family (labels one-hot, C = 10 classes)::

    z         ~ Normal(0, I)                          z in R^z_dim
    y         ~ OneHotCategorical(1/C, ..., 1/C)      observed where the batch has labels
    x | y, z  ~ Bernoulli(decoder([z, y]))            decoder: z_dim + C -> hidden -> 784
    q(y | x)    = OneHotCategorical(encoder_y(x))     only where labels are not given
    q(z | x, y) = Normal(encoder_z([x, y]))

========  ===========  ==============================================================
site      event shape  plate
========  ===========  ==============================================================
``z``     (z_dim,)     ``data`` (without a size, as the example writes it)
``y``     (C,)         ``data`` (observed when ``ys`` is given; enumerated in the guide)
``x``     (784,)       ``data`` (observed: the images)
========  ===========  ==============================================================

The guide's ``y`` site is marked for parallel enumeration (``config_enumerate``): under
``TraceEnum_ELBO`` the unlabelled objective sums over the C classes exactly. Networks take
the enumerated ``y`` (C, 1, C) against a batch (N, ·) by broadcasting, as the example's
``allow_broadcast`` does. Hidden layers start from N(0, 0.001²) weights and biases, as the
example's ``utils/custom_mlp.py`` initialises them; output layers keep PyTorch's default.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import config_enumerate
from torch import nn

from models.nets import cat_broadcast


def _hidden(n_in: int, n_out: int) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    with torch.no_grad():  # utils/custom_mlp.py: "initialize the layer properly"
        layer.weight.normal_(0, 0.001)
        layer.bias.normal_(0, 0.001)
    return layer


class SSVAE(nn.Module):
    """M2's networks with the example's ``model(xs, ys=None)``, ``guide(xs, ys=None)`` and
    ``classifier(xs)``; ``ys`` are one-hot labels (N, C)."""

    def __init__(self, output_size: int = 10, input_size: int = 784, z_dim: int = 50,
                 hidden: int = 500):
        super().__init__()
        self.output_size, self.input_size, self.z_dim = output_size, input_size, z_dim
        self.encoder_y = nn.Sequential(_hidden(input_size, hidden), nn.Softplus(),
                                       nn.Linear(hidden, output_size), nn.Softmax(dim=-1))
        self.encoder_z = nn.Sequential(_hidden(input_size + output_size, hidden),
                                       nn.Softplus(), nn.Linear(hidden, 2 * z_dim))
        self.decoder = nn.Sequential(_hidden(z_dim + output_size, hidden), nn.Softplus(),
                                     nn.Linear(hidden, input_size), nn.Sigmoid())

    def model(self, xs: torch.Tensor, ys: torch.Tensor | None = None) -> torch.Tensor:
        """p(z) p(y) p(x | y, z): y is observed where ``ys`` is given."""
        pyro.module("ss_vae", self)
        batch_size = xs.size(0)
        with pyro.plate("data"):
            prior_loc = xs.new_zeros(batch_size, self.z_dim)
            zs = pyro.sample("z", dist.Normal(prior_loc, torch.ones_like(prior_loc))
                             .to_event(1))
            alpha_prior = xs.new_ones(batch_size, self.output_size) / self.output_size
            ys = pyro.sample("y", dist.OneHotCategorical(alpha_prior), obs=ys)
            loc = self.decoder(cat_broadcast(zs, ys))  # (*enum, *particles, N, 784)
            pyro.sample("x", dist.Bernoulli(loc, validate_args=False).to_event(1), obs=xs)
            return loc

    @config_enumerate
    def guide(self, xs: torch.Tensor, ys: torch.Tensor | None = None) -> None:
        """q(y | x) where ``ys`` is not given, then q(z | x, y)."""
        with pyro.plate("data"):
            if ys is None:
                ys = pyro.sample("y", dist.OneHotCategorical(self.encoder_y(xs)))
            loc, log_scale = self.encoder_z(cat_broadcast(xs, ys)).chunk(2, dim=-1)
            pyro.sample("z", dist.Normal(loc, torch.exp(log_scale)).to_event(1))

    def classifier(self, xs: torch.Tensor) -> torch.Tensor:
        """The most probable class under q(y | x), one-hot (N, C)."""
        alpha = self.encoder_y(xs)
        return torch.zeros_like(alpha).scatter_(-1, alpha.argmax(-1, keepdim=True), 1.0)
