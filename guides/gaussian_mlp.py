"""Diagonal Gaussian MLP encoder."""

from __future__ import annotations

import pyro
import torch
from pyro.nn import PyroModule
from torch import nn

from guides import register_guide
from models import data_plate
from models.distributions import DiagNormal
from models.nets import mlp, scale_transform


@register_guide("gaussian_mlp")
class GaussianMLPGuide(PyroModule):
    """Amortized diagonal Gaussian encoder (Kingma & Welling 2014, appendix C.2).

    Variational family::

        h = MLP_φ(x)                                  x_dim -> hidden
        z | x ~ Normal(μ_φ(h), diag(σ_φ(h)²))          σ = softplus(·) + 1e-5, or exp

    Samples are reparameterized (z = μ + σ ε), so Trace_ELBO's gradient is pathwise.

    ========  ===========  =====================
    site      event shape  plate
    ========  ===========  =====================
    ``z``     (z_dim,)     data
    ========  ===========  =====================
    """

    def __init__(self, x_dim: int = 784, z_dim: int = 50, hidden: tuple[int, ...] = (400,),
                 activation: str = "softplus", scale: str = "softplus"):
        super().__init__()
        self.x_dim, self.z_dim = x_dim, z_dim
        self.to_scale = scale_transform(scale)
        self.trunk = mlp([x_dim, *hidden], activation, final_activation=True)
        self.head = nn.Linear(hidden[-1] if hidden else x_dim, 2 * z_dim)

    def encode_gaussian(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ_φ(x), σ_φ(x)), each (..., z_dim): q(z | x) without a sample site, for models
        that share the encoder (the VampPrior; ``models.tie``)."""
        loc, raw = self.head(self.trunk(x)).chunk(2, dim=-1)  # (..., z_dim) each
        return loc, self.to_scale(raw)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        with data_plate(x, y):
            return pyro.sample("z", DiagNormal(*self.encode_gaussian(x)))  # (N, z_dim)
