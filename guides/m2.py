"""Semi-supervised M2 guide: a classifier q(y | x) and an encoder q(z | x, y)."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import config_enumerate
from pyro.nn import PyroModule

from guides import register_guide
from models import data_plate
from models.distributions import DiagNormal
from models.m2 import PYRO_INIT_STD
from models.nets import GaussianHead, cat_broadcast, mlp, normal_init_, one_hot


@register_guide("m2")
class M2Guide(PyroModule):
    """Kingma et al. (2014), "Semi-supervised learning with deep generative models", M2:
    the guide for :class:`models.m2.M2` (or :class:`models.conditional_mlp.ConditionalMLP`)
    on labelled and unlabelled data alike.

    The hidden layers' weights and biases (every Linear but the output ones) are drawn from
    N(0, ``init_std``²), 1e-3 by default, as in Pyro's ``examples/vae/ss_vae_M2.py``
    (``utils/custom_mlp.py``, ``MLP.__init__``; output layers keep PyTorch's default): with
    PyTorch's default initialisation M2 learned far slower than the example in its first
    epochs (issue 26); see :class:`models.m2.M2`. ``init_std=None`` keeps PyTorch's default.

    Variational family::

        y | x    ~ Categorical(softmax(g_φ(x)))            only when y is not given
        z | x, y ~ Normal(μ_φ([x, onehot(y)]), diag σ_φ([x, onehot(y)])²)

    The y site is marked for parallel enumeration (``config_enumerate``): under
    ``TraceEnum_ELBO`` the unlabelled objective sums over the C classes exactly, weighted by
    q(y | x); other ELBOs sample y. ``classifier`` gives q(y | x)'s logits.

    ========  ===========  ===============================================
    site      event shape  plate
    ========  ===========  ===============================================
    ``y``     ()           data (only when y is not given; enumerated)
    ``z``     (z_dim,)     data
    ========  ===========  ===============================================
    """

    def __init__(self, x_dim: int = 784, z_dim: int = 50, hidden: tuple[int, ...] = (500,),
                 activation: str = "softplus", num_classes: int = 10, scale: str = "softplus",
                 init_std: float | None = PYRO_INIT_STD):
        super().__init__()
        self.x_dim, self.z_dim, self.num_classes = x_dim, z_dim, num_classes
        self.classifier = mlp([x_dim, *hidden, num_classes], activation)
        self.z_given_xy = GaussianHead(x_dim + num_classes, hidden, z_dim, activation, scale)
        if init_std is not None:
            normal_init_(self.classifier[:-1], init_std)  # hidden layers only
            normal_init_(self.z_given_xy.trunk, init_std)

    @config_enumerate
    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        with data_plate(x, y):
            if y is None:
                y = pyro.sample("y", dist.Categorical(logits=self.classifier(x)))  # (N,) or
            h = cat_broadcast(x, one_hot(y, self.num_classes, x))  # enumerated (C, 1)
            return pyro.sample("z", DiagNormal(*self.z_given_xy(h)))  # (*enum, N, z_dim)
