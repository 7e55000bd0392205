"""Diagonal Gaussian convolutional encoder for colour (or grey) images of any size."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro
import torch
from pyro.nn import PyroModule
from torch import nn

from guides import register_guide
from models import data_plate
from models.conv_rgb import ConvStages, check_image
from models.distributions import DiagNormal
from models.nets import mlp, scale_transform


@register_guide("conv_rgb")
class ConvRGBGuide(PyroModule):
    """Amortized diagonal Gaussian encoder with one stride-2 convolution per stage, the
    mirror of the ``conv_rgb`` model's decoder.

    Variational family::

        h = MLP(conv_φ(x))                            image -> features -> hidden
        z | x ~ Normal(μ_φ(h), diag(σ_φ(h)²))          σ = softplus(·) + 1e-5, or exp

    ``x`` is a flat image laid out as ``image_shape = (channels, height, width)``; the
    stages (``channels``, default as the model's) each halve height and width; without
    ``image_shape`` the data's size ``x_dim`` gives it, as for the model.

    ========  ===========  =====================
    site      event shape  plate
    ========  ===========  =====================
    ``z``     (z_dim,)     data
    ========  ===========  =====================
    """

    def __init__(self, image_shape: Sequence[int] | None = None, z_dim: int = 64,
                 hidden: tuple[int, ...] = (512,), channels: Sequence[int] | None = None,
                 activation: str = "relu", scale: str = "softplus", x_dim: int | None = None):
        super().__init__()
        self.image_shape, channels = check_image(image_shape, channels, x_dim, "conv_rgb")
        self.x_dim, self.z_dim = math.prod(self.image_shape), z_dim
        self.to_scale = scale_transform(scale)
        conv = ConvStages(self.image_shape, channels, activation)
        self.trunk = nn.Sequential(
            conv, mlp([conv.features, *hidden], activation, final_activation=True))
        self.head = nn.Linear(hidden[-1] if hidden else conv.features, 2 * z_dim)

    def encode_gaussian(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ_φ(x), σ_φ(x)), each (..., z_dim): q(z | x) without a sample site."""
        loc, raw = self.head(self.trunk(x - 0.5)).chunk(2, dim=-1)  # (..., z_dim) each
        return loc, self.to_scale(raw)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        with data_plate(x, y):
            return pyro.sample("z", DiagNormal(*self.encode_gaussian(x)))  # (N, z_dim)
