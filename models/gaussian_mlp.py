"""Gaussian MLP decoder for continuous data, with a learned per-dimension scale."""

from __future__ import annotations

import pyro
import torch
from pyro.nn import PyroModule

from models import data_plate, register_model
from models.distributions import DiagNormal
from models.nets import StandardNormal, mlp


@register_model("gaussian_mlp")
class GaussianMLP(PyroModule):
    """VAE generative model for continuous data (Kingma & Welling 2014, appendix C.2).

    Generative story::

        z     ~ Normal(0, I)                          z in R^z_dim
        x | z ~ Normal(μ_θ(z), diag(σ²))              μ_θ: MLP z_dim -> hidden -> x_dim

    σ is a learned vector of per-dimension standard deviations, kept above ``min_scale`` so
    that the density stays bounded on dimensions the data never varies (MNIST's border
    pixels). ``mean="sigmoid"`` squashes μ into (0, 1) for pixel intensities.

    ========  ===========  =====================
    site      event shape  plate
    ========  ===========  =====================
    ``z``     (z_dim,)     data
    ``x``     (x_dim,)     data (observed when x is given)
    ========  ===========  =====================
    """

    def __init__(self, x_dim: int = 784, z_dim: int = 50, hidden: tuple[int, ...] = (400,),
                 activation: str = "softplus", mean: str = "identity", init_scale: float = 1.0,
                 min_scale: float = 1e-3):
        super().__init__()
        if mean not in ("identity", "sigmoid"):
            raise ValueError(f"mean must be 'identity' or 'sigmoid', got {mean!r}")
        if not init_scale > min_scale > 0:
            raise ValueError(f"need init_scale > min_scale > 0, got {init_scale}, {min_scale}")
        self.x_dim, self.z_dim, self.mean = x_dim, z_dim, mean
        self.decoder = mlp([z_dim, *hidden, x_dim], activation)
        self.min_scale = min_scale
        self.scale_raw = torch.nn.Parameter(
            torch.full((x_dim,), float(init_scale) - min_scale).log())  # scale - min, logged
        self.prior = StandardNormal(z_dim)

    @property
    def scale(self) -> torch.Tensor:
        """σ = min_scale + exp(scale_raw) (Pyro's transform to ``greater_than(min_scale)``)."""
        return self.scale_raw.exp() + self.min_scale

    def forward(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None):
        with data_plate(x, y):
            z = pyro.sample("z", self.prior())
            loc = self.decoder(z)  # (*particles, N, x_dim)
            if self.mean == "sigmoid":
                loc = torch.sigmoid(loc)
            return pyro.sample("x", DiagNormal(loc, self.scale), obs=x)
