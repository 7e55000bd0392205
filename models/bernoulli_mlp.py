"""Bernoulli MLP decoder for binary pixels."""

from __future__ import annotations

import pyro
import torch
from pyro.nn import PyroModule

from models import data_plate, register_model
from models.distributions import BernoulliPixels
from models.nets import StandardNormal, mlp


@register_model("bernoulli_mlp")
class BernoulliMLP(PyroModule):
    """VAE generative model for binary data (Kingma & Welling 2014, appendix C.1).

    Generative story::

        z     ~ Normal(0, I)                          z in R^z_dim
        x | z ~ Bernoulli(logits = f_θ(z))            f_θ: MLP z_dim -> hidden -> x_dim

    ========  ===========  =====================
    site      event shape  plate
    ========  ===========  =====================
    ``z``     (z_dim,)     data
    ``x``     (x_dim,)     data (observed when x is given)
    ========  ===========  =====================
    """

    def __init__(self, x_dim: int = 784, z_dim: int = 50, hidden: tuple[int, ...] = (400,),
                 activation: str = "softplus"):
        super().__init__()
        self.x_dim, self.z_dim = x_dim, z_dim
        self.decoder = mlp([z_dim, *hidden, x_dim], activation)
        self.prior = StandardNormal(z_dim)

    def forward(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None):
        with data_plate(x, y):
            z = pyro.sample("z", self.prior())
            logits = self.decoder(z)  # (*particles, N, x_dim)
            return pyro.sample("x", BernoulliPixels(logits), obs=x)
