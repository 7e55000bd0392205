"""VQ-VAE: a decoder from a grid of discrete codes, with a prior over the codes."""

from __future__ import annotations

import pyro
import torch
from pyro.nn import PyroModule
from torch import nn

from models import data_plate, register_model
from models.code_prior import CodePrior
from models.codes import Codebook, CodebookPrior, CodeSequence
from models.distributions import BernoulliPixels, DiagNormal


class GridDecoder(nn.Module):
    """A grid of code vectors (..., L·D), L = (h/4)·(w/4), to flat image logits or means."""

    def __init__(self, code_dim: int, image_shape, channels=(32, 64)):
        super().__init__()
        c, h, w = image_shape
        c1, c2 = channels
        self.grid = (code_dim, h // 4, w // 4)
        self.net = nn.Sequential(
            nn.Conv2d(code_dim, c2, 3, padding=1), nn.ReLU(),  # (B, c2, h/4, w/4)
            nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1), nn.ReLU(),  # (B, c1, h/2, w/2)
            nn.ConvTranspose2d(c1, c, 4, stride=2, padding=1))  # (B, c, h, w)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch, (d, gh, gw) = z.shape[:-1], self.grid
        grid = z.reshape(-1, gh * gw, d).transpose(1, 2).reshape(-1, d, gh, gw)
        return self.net(grid).reshape(*batch, -1)


@register_model("vqvae")
class VQVAE(PyroModule):
    """VQ-VAE generative model (van den Oord, Vinyals & Kavukcuoglu 2017).

    Generative story::

        k     ~ p(k)                      a grid of L = (h/4)(w/4) codes in {0..K-1}: uniform,
                                          or a learned autoregressive prior (CodePrior)
        z     = (e_k1, ..., e_kL)         their codebook vectors, flattened: z in R^(L·D)
        x | z ~ Bernoulli(logits = f(z))  or Normal(sigmoid(f(z)), σ²) for grey levels

    How it meets the lab's contract:

    * the latent site ``z`` holds the code vectors, not the indices, so that the guide's
      straight-through estimate (z = z_e + sg(e_k − z_e)) carries the decoder's gradient to
      the encoder; its prior reads the codes back as the nearest codebook entries;
    * the guide (``guides/vqvae.py``) is a point mass at the quantized encoder output:
      log q(z | x) = 0, so the ELBO is log p(x | z) + log p(z), a lower bound on log p(x);
    * the codebook belongs to the guide and the model uses it through :meth:`tie`
      (``models.tie(model, guide)``, which ``vae-train`` and ``load_run`` call);
    * the codebook and commitment losses are not part of the bound: the objective
      :class:`inference.vq.VQELBO` adds them to the loss it minimizes.

    ``prior="transformer"`` holds a :class:`~models.code_prior.CodePrior`, fitted after the
    VQ-VAE by maximum likelihood on the training set's codes (``vae-train --prior-epochs``);
    until then (``prior_fitted`` false) the prior is uniform.

    ========  ===========  =====================
    site      event shape  plate
    ========  ===========  =====================
    ``z``     (L·D,)       data
    ``x``     (c·h·w,)     data (observed when x is given)
    ========  ===========  =====================
    """

    latent = "codebook"

    def __init__(self, image_shape: tuple[int, int, int] = (1, 28, 28), num_codes: int = 512,
                 code_dim: int = 16, channels: tuple[int, int] = (32, 64),
                 likelihood: str = "bernoulli", prior: str = "uniform", init_scale: float = 1.0,
                 min_scale: float = 1e-2):
        super().__init__()
        if likelihood not in ("bernoulli", "gaussian") or prior not in ("uniform", "transformer"):
            raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian' and prior 'uniform' "
                             f"or 'transformer', got {likelihood!r}, {prior!r}")
        if not init_scale > min_scale > 0:
            raise ValueError(f"need init_scale > min_scale > 0, got {init_scale}, {min_scale}")
        c, h, w = image_shape
        self.image_shape, self.likelihood = tuple(image_shape), likelihood
        self.min_scale = min_scale
        self.num_codes, self.code_dim, self.length = num_codes, code_dim, (h // 4) * (w // 4)
        self.x_dim = c * h * w
        self.codebook = Codebook(num_codes, code_dim)  # replaced by the guide's in tie()
        self.decoder = GridDecoder(code_dim, image_shape, channels)
        self.prior = CodePrior(num_codes, self.length) if prior == "transformer" else None
        self.register_buffer("prior_fitted", torch.tensor(False))
        if likelihood == "gaussian":
            self.scale_raw = nn.Parameter(  # σ - min_scale, logged
                torch.full((self.x_dim,), float(init_scale) - min_scale).log())

    def tie(self, guide) -> None:
        """Use the guide's codebook, the one the encoder's outputs are quantized to (a guide
        without one is left to :func:`inference.check_pair` to refuse)."""
        book = getattr(guide, "codebook", None)
        if isinstance(book, Codebook):
            self.codebook = book

    def codes(self) -> CodeSequence:
        """p(k): the learned prior once fitted, else uniform over the K^L grids."""
        net = self.prior.net if self.prior is not None and bool(self.prior_fitted) else None
        return CodeSequence(net, self.num_codes, self.length)

    def forward(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None):
        with data_plate(x, y):
            z = pyro.sample("z", CodebookPrior(self.codebook, self.codes()))  # (..., N, L·D)
            out = self.decoder(z)  # (..., N, c·h·w)
            if self.likelihood == "bernoulli":
                return pyro.sample("x", BernoulliPixels(out), obs=x)
            scale = self.scale_raw.exp() + self.min_scale
            return pyro.sample("x", DiagNormal(torch.sigmoid(out), scale), obs=x)
