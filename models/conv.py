"""Convolutional decoder for 28x28 binary images."""

from __future__ import annotations

import pyro
import torch
from pyro.nn import PyroModule
from torch import nn

from models import data_plate, register_model
from models.distributions import BernoulliPixels
from models.nets import ConvDecoder, StandardNormal, mlp


@register_model("conv")
class ConvBernoulli(PyroModule):
    """VAE generative model with a transposed-convolution decoder and Bernoulli pixels.

    Generative story::

        z     ~ Normal(0, I)                                  z in R^z_dim
        h     = MLP(z)                                        z_dim -> hidden
        x | z ~ Bernoulli(logits = deconv(h))                 two stride-2 transposed convs

    ``x`` is a flat image, ``image_shape = (channels, height, width)`` tells the decoder how
    to lay it out; height and width must be divisible by 4.

    ========  =======================  =====================
    site      event shape              plate
    ========  =======================  =====================
    ``z``     (z_dim,)                 data
    ``x``     (c*h*w,) = (784,)        data (observed when x is given)
    ========  =======================  =====================
    """

    def __init__(self, image_shape: tuple[int, int, int] = (1, 28, 28), z_dim: int = 50,
                 hidden: tuple[int, ...] = (256,), channels: tuple[int, int] = (32, 64),
                 activation: str = "relu"):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.x_dim = image_shape[0] * image_shape[1] * image_shape[2]
        self.z_dim = z_dim
        trunk = mlp([z_dim, *hidden], activation, final_activation=True) if hidden else None
        self.decoder = nn.Sequential(
            *([trunk] if trunk is not None else []),
            ConvDecoder(hidden[-1] if hidden else z_dim, image_shape, channels, activation),
        )
        self.prior = StandardNormal(z_dim)

    def forward(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None):
        with data_plate(x, y):
            z = pyro.sample("z", self.prior())
            logits = self.decoder(z)  # (*particles, N, c*h*w)
            return pyro.sample("x", BernoulliPixels(logits), obs=x)
