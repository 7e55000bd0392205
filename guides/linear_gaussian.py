"""Linear Gaussian encoder, expressive enough to hold the exact posterior of linear_gaussian."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.nn import PyroModule
from torch import nn

from guides import register_guide
from models import data_plate
from models.distributions import DiagNormal
from models.nets import Constrained


@register_guide("linear_gaussian")
class LinearGaussianGuide(PyroModule):
    """Amortized linear Gaussian guide.

    Variational family::

        z | x ~ Normal(A x + c, L Lᵀ)        covariance="full"      (L lower triangular)
        z | x ~ Normal(A x + c, diag(s²))    covariance="diagonal"

    With ``covariance="full"`` it contains the exact posterior of the ``linear_gaussian``
    model; :meth:`set_posterior` puts it there.

    ========  ===========  =====================
    site      event shape  plate
    ========  ===========  =====================
    ``z``     (z_dim,)     data
    ========  ===========  =====================
    """

    scale_tril = Constrained(constraints.lower_cholesky)  # L, with covariance="full"
    scale = Constrained(constraints.positive)  # s, with covariance="diagonal"

    def __init__(self, x_dim: int = 784, z_dim: int = 50, covariance: str = "full"):
        super().__init__()
        if covariance not in ("full", "diagonal"):
            raise ValueError(f"covariance must be 'full' or 'diagonal', got {covariance!r}")
        self.x_dim, self.z_dim, self.covariance = x_dim, z_dim, covariance
        self.weight = nn.Parameter(torch.zeros(z_dim, x_dim))  # A: (d, D)
        self.bias = nn.Parameter(torch.zeros(z_dim))
        if covariance == "full":
            self.scale_tril = torch.eye(z_dim)
        else:
            self.scale = torch.ones(z_dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        with data_plate(x, y):
            loc = x @ self.weight.T + self.bias  # (N, d)
            if self.covariance == "full":
                fn = dist.MultivariateNormal(loc, scale_tril=self.scale_tril)
            else:
                fn = DiagNormal(loc, self.scale)
            return pyro.sample("z", fn)

    @torch.no_grad()
    def set_posterior(self, model) -> LinearGaussianGuide:
        """Set q(z | x) to p(z | x) of a ``linear_gaussian`` model (its diagonal if diagonal)."""
        a, c, cov = model.posterior_params()
        self.weight.copy_(a)
        self.bias.copy_(c)
        if self.covariance == "full":
            self.scale_tril = torch.linalg.cholesky(cov)
        else:
            self.scale = cov.diagonal().sqrt()
        return self
