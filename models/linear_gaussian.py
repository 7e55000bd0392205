"""Linear-Gaussian latent variable model: the analytic oracle of the lab."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.nn import PyroModule
from torch import nn

from models import data_plate, register_model
from models.distributions import DiagNormal
from models.nets import Constrained, StandardNormal


@register_model("linear_gaussian")
class LinearGaussian(PyroModule):
    """Probabilistic PCA (Tipping & Bishop 1999), whose evidence and posterior are exact.

    Generative story::

        z     ~ Normal(0, I_d)
        x | z ~ Normal(W z + b, σ² I_D)

    Closed forms (used as oracles by the tests)::

        p(x)     = N(x; b, W Wᵀ + σ² I)                                 :meth:`marginal`
        p(z | x) = N(Σ Wᵀ (x − b) / σ², Σ),  Σ = (I + Wᵀ W / σ²)⁻¹       :meth:`posterior`

    ========  ===========  =====================
    site      event shape  plate
    ========  ===========  =====================
    ``z``     (z_dim,)     data
    ``x``     (x_dim,)     data (observed when x is given)
    ========  ===========  =====================
    """

    noise = Constrained(constraints.positive)  # σ, held as noise_raw = log σ

    def __init__(self, x_dim: int = 784, z_dim: int = 50, init_noise: float = 1.0,
                 init_weight_scale: float = 0.1):
        super().__init__()
        self.x_dim, self.z_dim = x_dim, z_dim
        self.weight = nn.Parameter(torch.randn(x_dim, z_dim) * init_weight_scale)  # W: (D, d)
        self.bias = nn.Parameter(torch.zeros(x_dim))
        self.noise = torch.tensor(float(init_noise))
        self.prior = StandardNormal(z_dim)

    def forward(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None):
        with data_plate(x, y):
            z = pyro.sample("z", self.prior())
            loc = z @ self.weight.T + self.bias  # (*particles, N, D)
            return pyro.sample("x", DiagNormal(loc, self.noise.expand(self.x_dim)), obs=x)

    def marginal(self) -> dist.MultivariateNormal:
        """p(x) = N(b, W Wᵀ + σ² I)."""
        w, b, s2 = self.weight, self.bias, self.noise**2
        cov = w @ w.T + s2 * torch.eye(self.x_dim, dtype=w.dtype, device=w.device)
        return dist.MultivariateNormal(b, covariance_matrix=cov)

    def posterior_params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(A, c, Σ) with p(z | x) = N(A x + c, Σ)."""
        w, b, s2 = self.weight, self.bias, self.noise**2
        eye = torch.eye(self.z_dim, dtype=w.dtype, device=w.device)
        cov = torch.linalg.inv(eye + w.T @ w / s2)  # Σ: (d, d)
        cov = (cov + cov.T) / 2
        a = cov @ w.T / s2  # (d, D)
        return a, -a @ b, cov

    def posterior(self, x: torch.Tensor) -> dist.MultivariateNormal:
        """p(z | x) for a batch x of shape (N, D)."""
        a, c, cov = self.posterior_params()
        return dist.MultivariateNormal(x @ a.T + c, covariance_matrix=cov)
