"""Two stochastic layers: the IWAE paper's deeper MNIST model."""

from __future__ import annotations

import pyro
import torch
from pyro.nn import PyroModule

from models import data_plate, register_model
from models.distributions import BernoulliPixels, DiagNormal
from models.nets import GaussianHead, StandardNormal, mlp


@register_model("two_layer")
class TwoLayerBernoulli(PyroModule):
    """Generative model with two stochastic layers (Burda, Grosse & Salakhutdinov 2016,
    section 5: z1 of 100 and z2 of 50 units, tanh, two deterministic layers before each).

    Generative story::

        z2      ~ Normal(0, I)                                        z2 in R^z2_dim
        z1 | z2 ~ Normal(μ(z2), diag σ(z2)²)     MLP z2_dim -> hidden2 -> heads
        x  | z1 ~ Bernoulli(logits = f(z1))      MLP z1_dim -> hidden1 -> x_dim

    ========  ===========  =====================
    site      event shape  plate
    ========  ===========  =====================
    ``z2``    (z2_dim,)    data
    ``z1``    (z1_dim,)    data
    ``x``     (x_dim,)     data (observed when x is given)
    ========  ===========  =====================
    """

    def __init__(self, x_dim: int = 784, z1_dim: int = 100, z2_dim: int = 50,
                 hidden1: tuple[int, ...] = (200, 200), hidden2: tuple[int, ...] = (100, 100),
                 activation: str = "tanh", scale: str = "exp"):
        super().__init__()
        self.x_dim, self.z_dim, self.z1_dim = x_dim, z2_dim, z1_dim
        self.prior = StandardNormal(z2_dim)
        self.z1_given_z2 = GaussianHead(z2_dim, hidden2, z1_dim, activation, scale)
        self.decoder = mlp([z1_dim, *hidden1, x_dim], activation)

    def forward(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None):
        with data_plate(x, y):
            z2 = pyro.sample("z2", self.prior())
            z1 = pyro.sample("z1", DiagNormal(*self.z1_given_z2(z2)))  # (*particles, N, z1)
            return pyro.sample("x", BernoulliPixels(self.decoder(z1)), obs=x)
