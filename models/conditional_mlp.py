"""Label-conditional VAE model: the generative model of the CVAE and of M2."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule

from models import data_plate, register_model
from models.distributions import BernoulliPixels, GreyCrossEntropy
from models.nets import StandardNormal, cat_broadcast, mlp, one_hot


def _continuous_bernoulli(logits: torch.Tensor) -> dist.TorchDistribution:
    return dist.ContinuousBernoulli(logits=logits).to_event(1)


#: x's distribution given the decoder's logits, by name.
LIKELIHOODS = {"bernoulli": BernoulliPixels, "continuous_bernoulli": _continuous_bernoulli,
               "grey_cross_entropy": GreyCrossEntropy}


@register_model("conditional_mlp")
class ConditionalMLP(PyroModule):
    """p(y) p(z) p_θ(x | z, y): Kingma et al. (2014)'s M2 generative model, which is also the
    model of a conditional VAE (Sohn et al. 2015) when y is always given.

    Generative story::

        y         ~ Categorical(1/C, ..., 1/C)             y in {0, ..., C-1}
        z         ~ Normal(0, I)                           z in R^z_dim
        x | z, y  ~ Bernoulli(logits = f_θ([z, onehot(y)]))  f_θ: MLP -> hidden -> x_dim

    ``likelihood="continuous_bernoulli"`` scores grey levels in [0, 1] instead of binary
    pixels: x | z, y ~ ContinuousBernoulli(logits = f_θ(...)) per pixel, the normalised
    density of Loaiza-Ganem & Cunningham (2019), so that log p(x) bounds stay true densities.
    ``likelihood="grey_cross_entropy"`` is Pyro's ``ss_vae_M2`` example's objective: the
    Bernoulli log-mass Σ x log p + (1 − x) log(1 − p) applied to grey levels with the support
    check off. It is a cross-entropy, not a density on [0, 1] (it lacks the continuous
    Bernoulli's normaliser), so the ELBO it gives is a training objective only, not a bound
    on log p(x) of grey images.

    Pass labels ``y`` (or ``poutine.condition(model, data={"y": ...})``) for class-conditional
    samples; without them y is drawn from its prior, or, under a guide that infers it (M2,
    ``guides/m2.py``), is a latent site that ``TraceEnum_ELBO`` sums out.

    ========  ===========  =========================================
    site      event shape  plate
    ========  ===========  =========================================
    ``y``     ()           data (observed when y is given)
    ``z``     (z_dim,)     data
    ``x``     (x_dim,)     data (observed when x is given)
    ========  ===========  =========================================
    """

    def __init__(self, x_dim: int = 784, z_dim: int = 50, hidden: tuple[int, ...] = (500,),
                 activation: str = "softplus", num_classes: int = 10,
                 likelihood: str = "bernoulli"):
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood {likelihood!r} is not one of {', '.join(LIKELIHOODS)}")
        self.likelihood = likelihood
        self.x_dim, self.z_dim, self.num_classes = x_dim, z_dim, num_classes
        self.prior = StandardNormal(z_dim)
        self.register_buffer("class_logits", torch.zeros(num_classes))
        self.decoder = mlp([z_dim + num_classes, *hidden, x_dim], activation)

    def forward(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None):
        with data_plate(x, y):
            y = pyro.sample("y", dist.Categorical(logits=self.class_logits), obs=y)
            z = pyro.sample("z", self.prior())  # (*particles, N, z_dim)
            h = cat_broadcast(z, one_hot(y, self.num_classes, z))  # (*enum, *particles, N, ·)
            return pyro.sample("x", LIKELIHOODS[self.likelihood](self.decoder(h)), obs=x)
