"""Label-conditional Gaussian encoder q(z | x, y), the guide of a conditional VAE."""

from __future__ import annotations

import pyro
import torch
from pyro.nn import PyroModule

from guides import register_guide
from models import data_plate
from models.distributions import DiagNormal
from models.nets import GaussianHead, cat_broadcast, one_hot


@register_guide("conditional_mlp")
class ConditionalMLPGuide(PyroModule):
    """q_φ(z | x, y) for :class:`models.conditional_mlp.ConditionalMLP` when labels are
    always given (a conditional VAE, Sohn et al. 2015). For unlabelled data use ``m2``.

    Variational family::

        z | x, y ~ Normal(μ_φ([x, onehot(y)]), diag σ_φ([x, onehot(y)])²)

    ========  ===========  =====================
    site      event shape  plate
    ========  ===========  =====================
    ``z``     (z_dim,)     data
    ========  ===========  =====================
    """

    def __init__(self, x_dim: int = 784, z_dim: int = 50, hidden: tuple[int, ...] = (500,),
                 activation: str = "softplus", num_classes: int = 10, scale: str = "softplus"):
        super().__init__()
        self.x_dim, self.z_dim, self.num_classes = x_dim, z_dim, num_classes
        self.z_given_xy = GaussianHead(x_dim + num_classes, hidden, z_dim, activation, scale)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        if y is None:
            raise ValueError("guide 'conditional_mlp' needs labels y with every batch; for "
                             "unlabelled data use guide 'm2', which infers y")
        with data_plate(x, y):
            h = cat_broadcast(x, one_hot(y, self.num_classes, x))  # (N, x_dim + C)
            return pyro.sample("z", DiagNormal(*self.z_given_xy(h)))
