"""Bernoulli MLP decoder under the VampPrior, a mixture of posteriors at learned pseudo-inputs."""

from __future__ import annotations

import pyro
import torch
from pyro.nn import PyroModule
from torch import nn
from torch.nn import functional as F

from models import TieError, data_plate, register_model
from models.distributions import BernoulliPixels, DiagNormalMixture
from models.nets import GaussianHead, mlp

ENCODERS = ("guide", "own")


@register_model("vamp")
class VampPriorBernoulli(PyroModule):
    """Binary pixels, MLP decoder, the VampPrior: q(z | u) averaged over learned pseudo-inputs.

    Tomczak & Welling 2018, "VAE with a VampPrior": the prior is the variational posterior
    averaged over K learned pseudo-inputs u_k.

    Generative story::

        u_k   = hardtanh(w_k) in [0, 1]^x_dim                k = 1..K, w_k learned
        z     ~ (1/K) Σ_k Normal(μ(u_k), diag σ(u_k)²)        z in R^z_dim
        x | z ~ Bernoulli(logits = f_θ(z))                   f_θ: MLP z_dim -> hidden -> x_dim

    (μ, σ) is a Gaussian encoder evaluated at the pseudo-inputs. ``encoder="guide"`` (the
    paper's prior) takes the guide's: its ``encode_gaussian(x)`` (``gaussian_mlp``,
    ``conv``; the base q_0 of the ``iaf`` and ``spline`` guides), through
    :func:`models.tie`, which ``vae-train`` and ``load_run`` call. The guide keeps owning the
    encoder; the model holds a reference, so checkpoints store the weights once, in the
    guide's state, and the encoder learns from both the posterior and the prior.
    ``encoder="own"`` gives the model its own MLP encoder of the same shape (``hidden``,
    ``activation``, ``scale``), so the model pairs with any guide of z. The pseudo-inputs
    start at N(0.05, 0.01²) per pixel, as in the paper's code for MNIST.

    log p(z) sums out the component (:class:`~models.distributions.DiagNormalMixture`).
    KL(q || p) has no closed form: ``--loss meanfield`` uses the Monte Carlo term for z.

    ========  ===========  =====================
    site      event shape  plate
    ========  ===========  =====================
    ``z``     (z_dim,)     data
    ``x``     (x_dim,)     data (observed when x is given)
    ========  ===========  =====================
    """

    def __init__(self, x_dim: int = 784, z_dim: int = 50, hidden: tuple[int, ...] = (400,),
                 activation: str = "softplus", pseudo_inputs: int = 500, encoder: str = "guide",
                 scale: str = "softplus"):
        super().__init__()
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be 'guide' (share the guide's) or 'own', got "
                             f"{encoder!r}")
        if not isinstance(pseudo_inputs, int) or pseudo_inputs < 1:
            raise ValueError(f"pseudo_inputs must be a whole number ≥ 1, got {pseudo_inputs!r}")
        self.x_dim, self.z_dim, self.encoder_source = x_dim, z_dim, encoder
        self.decoder = mlp([z_dim, *hidden, x_dim], activation)
        self.pseudo = nn.Parameter(0.05 + 0.01 * torch.randn(pseudo_inputs, x_dim))
        if encoder == "own":
            self.prior_encoder = GaussianHead(x_dim, hidden, z_dim, activation, scale)
        self._tied: tuple = ()  # (guide,) once tied; a tuple keeps it out of the submodules

    def tie(self, guide) -> None:
        """Build the prior from ``guide.encode_gaussian`` (``encoder="guide"``); a model with
        its own encoder ignores the guide."""
        if self.encoder_source == "own":
            return
        if not callable(getattr(guide, "encode_gaussian", None)):
            name = getattr(guide, "registry_name", type(guide).__name__)
            raise TieError(f"model 'vamp' builds its prior from the guide's Gaussian encoder "
                           f"(encoder='guide'), but guide {name!r} has none to share "
                           f"(encode_gaussian(x)); pair it with gaussian_mlp, conv, iaf or "
                           f"spline, or give the model its own encoder: --model-config "
                           f"'{{\"encoder\": \"own\"}}'")
        self._tied = (guide,)

    @property
    def pseudo_inputs(self) -> torch.Tensor:
        """u_k, shape (K, x_dim), in [0, 1]."""
        return F.hardtanh(self.pseudo, 0.0, 1.0)

    def prior(self) -> DiagNormalMixture:
        """p(z) = (1/K) Σ_k q(z | u_k): batch shape (), event shape (z_dim,)."""
        u = self.pseudo_inputs
        if self.encoder_source == "own":
            loc, scale = self.prior_encoder(u)  # (K, z_dim) each
        elif self._tied:
            loc, scale = self._tied[0].encode_gaussian(u)
        else:
            raise TieError("model 'vamp' (encoder='guide') builds its prior from its guide's "
                           "encoder but is not tied to a guide: call models.tie(model, guide) "
                           "after building the pair (vae-train and load_run do), or give it "
                           "its own encoder, encoder='own'")
        return DiagNormalMixture(loc.new_zeros(loc.shape[0]), loc, scale)

    def forward(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None):
        with data_plate(x, y):
            z = pyro.sample("z", self.prior())
            logits = self.decoder(z)  # (*particles, N, x_dim)
            return pyro.sample("x", BernoulliPixels(logits), obs=x)
