"""Bernoulli MLP decoder under a learned mixture-of-Gaussians prior."""

from __future__ import annotations

import pyro
import torch
from pyro.distributions import constraints
from pyro.nn import PyroModule
from torch import nn

from models import data_plate, register_model
from models.distributions import BernoulliPixels, DiagNormalMixture
from models.nets import MIN_SCALE, Constrained, mlp


@register_model("mixture")
class MixturePriorBernoulli(PyroModule):
    """Binary pixels, MLP decoder, a learned mixture-of-Gaussians prior over z.

    The ``bernoulli_mlp`` model with its N(0, I) prior replaced by C learned components
    (Nalisnick, Hertel & Smyth 2016, "Approximate inference for deep latent Gaussian
    mixtures"; Dilokthanakul et al. 2016).

    Generative story::

        z     ~ Σ_c π_c Normal(μ_c, diag σ_c²)              z in R^z_dim, c = 1..components
        x | z ~ Bernoulli(logits = f_θ(z))                  f_θ: MLP z_dim -> hidden -> x_dim

    π = softmax(logits) starts uniform, μ_c ~ N(0, I) and σ_c = 1 (σ_c > 1e-5); all three
    are trained with the decoder. The component is summed out inside log p(z)
    (:class:`~models.distributions.DiagNormalMixture`), so the only latent site is z and
    every guide of z fits. KL(q || p) has no closed form: ``--loss meanfield`` uses the
    Monte Carlo term for z, and trains exactly as ``--loss trace``.

    ========  ===========  =====================
    site      event shape  plate
    ========  ===========  =====================
    ``z``     (z_dim,)     data
    ``x``     (x_dim,)     data (observed when x is given)
    ========  ===========  =====================
    """

    scale = Constrained(constraints.greater_than(MIN_SCALE))  # σ_c, (components, z_dim)

    def __init__(self, x_dim: int = 784, z_dim: int = 50, hidden: tuple[int, ...] = (400,),
                 activation: str = "softplus", components: int = 10):
        super().__init__()
        if not isinstance(components, int) or components < 1:
            raise ValueError(f"components must be a whole number ≥ 1, got {components!r}")
        self.x_dim, self.z_dim = x_dim, z_dim
        self.decoder = mlp([z_dim, *hidden, x_dim], activation)
        self.logits = nn.Parameter(torch.zeros(components))
        self.loc = nn.Parameter(torch.randn(components, z_dim))
        self.scale = torch.ones(components, z_dim)

    def prior(self) -> DiagNormalMixture:
        """p(z), batch shape (), event shape (z_dim,)."""
        return DiagNormalMixture(self.logits, self.loc, self.scale)

    def forward(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None):
        with data_plate(x, y):
            z = pyro.sample("z", self.prior())
            logits = self.decoder(z)  # (*particles, N, x_dim)
            return pyro.sample("x", BernoulliPixels(logits), obs=x)
