"""A normalizing flow over latent codes, fitted by maximum likelihood (a post-hoc prior)."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions.transforms import (
    AffineTransform,
    Permute,
    affine_autoregressive,
    spline_autoregressive,
)
from pyro.nn import PyroModule

from models import data_plate, register_model

KINDS = ("spline", "maf")


@register_model("code_flow")
class CodeFlow(PyroModule):
    """p(x) of vectors x (a VAE's codes): a standard Normal pushed through ``layers``
    autoregressive steps in the MAF direction (Papamakarios et al. 2017), so that the
    density of a data point takes one pass per step and a draw ``x_dim`` passes. ``kind``:
    ``"maf"`` (affine steps) or ``"spline"`` (rational-quadratic splines, Durkan et al.
    2019), reversed between steps; a fixed affine map (``standardize``) puts the data at
    zero mean and unit scale first. A fully observed model: with ``fit`` and the ``empty``
    guide the ELBO is log p(x) itself.

    Generative story::

        u ~ Normal(0, I);  x = loc + scale * f_1^{-1}(... f_L^{-1}(u))

    ========  ===========  =================================
    site      event shape  plate
    ========  ===========  =================================
    ``x``     (x_dim,)     data (observed)
    ========  ===========  =================================
    """

    observes = "codes"  # a density of latent codes, not an image pair (tests/test_samplers.py)

    def __init__(self, x_dim: int = 50, layers: int = 4, hidden: tuple[int, ...] = (128, 128),
                 kind: str = "spline", count_bins: int = 8, bound: float = 4.0):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        self.x_dim = x_dim
        make = ((lambda: spline_autoregressive(x_dim, list(hidden), count_bins=count_bins,
                                               bound=bound)) if kind == "spline"
                else (lambda: affine_autoregressive(x_dim, list(hidden))))
        self.steps = torch.nn.ModuleList([make() for _ in range(layers)])
        self.register_buffer("loc", torch.zeros(x_dim))
        self.register_buffer("scale", torch.ones(x_dim))
        self.register_buffer("order", torch.arange(x_dim - 1, -1, -1))

    def standardize(self, x: torch.Tensor) -> None:
        """Set the fixed affine map from data ``x`` (N, x_dim): its mean and std per dim."""
        self.loc.copy_(x.mean(0))
        self.scale.copy_(x.std(0).clamp_min(1e-6))

    def distribution(self) -> dist.TransformedDistribution:
        base = dist.Normal(torch.zeros_like(self.loc), torch.ones_like(self.loc)).to_event(1)
        transforms = []
        for i, step in enumerate(self.steps):
            transforms.append(step.inv)
            if i < len(self.steps) - 1:
                transforms.append(Permute(self.order))
        transforms.append(AffineTransform(self.loc, self.scale, event_dim=1))
        return dist.TransformedDistribution(base, transforms)

    def forward(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None):
        with data_plate(x, y):
            return pyro.sample("x", self.distribution(), obs=x)
