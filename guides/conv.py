"""Diagonal Gaussian convolutional encoder for images."""

from __future__ import annotations

import pyro
import torch
from pyro.nn import PyroModule
from torch import nn

from guides import register_guide
from models import data_plate
from models.distributions import DiagNormal
from models.nets import ConvEncoder, mlp, scale_transform


@register_guide("conv")
class ConvGuide(PyroModule):
    """Amortized diagonal Gaussian encoder with two stride-2 convolutions.

    Variational family::

        h = MLP(conv_φ(x))                            image -> features -> hidden
        z | x ~ Normal(μ_φ(h), diag(σ_φ(h)²))          σ = softplus(·) + 1e-5, or exp

    ``x`` is a flat image laid out as ``image_shape = (channels, height, width)``.

    ========  ===========  =====================
    site      event shape  plate
    ========  ===========  =====================
    ``z``     (z_dim,)     data
    ========  ===========  =====================
    """

    def __init__(self, image_shape: tuple[int, int, int] = (1, 28, 28), z_dim: int = 50,
                 hidden: tuple[int, ...] = (256,), channels: tuple[int, int] = (32, 64),
                 activation: str = "relu", scale: str = "softplus"):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.x_dim = image_shape[0] * image_shape[1] * image_shape[2]
        self.z_dim = z_dim
        self.to_scale = scale_transform(scale)
        conv = ConvEncoder(image_shape, channels, activation)
        self.trunk = nn.Sequential(
            conv, mlp([conv.out_features, *hidden], activation, final_activation=True))
        self.head = nn.Linear(hidden[-1] if hidden else conv.out_features, 2 * z_dim)

    def encode_gaussian(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ_φ(x), σ_φ(x)), each (..., z_dim): q(z | x) without a sample site, for models
        that share the encoder (the VampPrior; ``models.tie``)."""
        loc, raw = self.head(self.trunk(x)).chunk(2, dim=-1)  # (..., z_dim) each
        return loc, self.to_scale(raw)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        with data_plate(x, y):
            return pyro.sample("z", DiagNormal(*self.encode_gaussian(x)))  # (N, z_dim)
