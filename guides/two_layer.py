"""Two-stochastic-layer encoder, the IWAE paper's deeper MNIST guide."""

from __future__ import annotations

import pyro
import torch
from pyro.nn import PyroModule

from guides import register_guide
from models import data_plate
from models.distributions import DiagNormal
from models.nets import GaussianHead


@register_guide("two_layer")
class TwoLayerGuide(PyroModule):
    """Bottom-up guide for :class:`models.two_layer.TwoLayerBernoulli` (Burda et al. 2016).

    Variational family::

        z1 | x  ~ Normal(μ(x), diag σ(x)²)       MLP x_dim -> hidden1 -> heads
        z2 | z1 ~ Normal(μ(z1), diag σ(z1)²)     MLP z1_dim -> hidden2 -> heads

    ========  ===========  =====================
    site      event shape  plate
    ========  ===========  =====================
    ``z1``    (z1_dim,)    data
    ``z2``    (z2_dim,)    data
    ========  ===========  =====================
    """

    def __init__(self, x_dim: int = 784, z1_dim: int = 100, z2_dim: int = 50,
                 hidden1: tuple[int, ...] = (200, 200), hidden2: tuple[int, ...] = (100, 100),
                 activation: str = "tanh", scale: str = "exp"):
        super().__init__()
        self.x_dim, self.z_dim, self.z1_dim = x_dim, z2_dim, z1_dim
        self.z1_given_x = GaussianHead(x_dim, hidden1, z1_dim, activation, scale)
        self.z2_given_z1 = GaussianHead(z1_dim, hidden2, z2_dim, activation, scale)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        with data_plate(x, y):
            z1 = pyro.sample("z1", DiagNormal(*self.z1_given_x(x)))
            return pyro.sample("z2", DiagNormal(*self.z2_given_z1(z1)))
