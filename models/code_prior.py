"""An autoregressive prior over grids of discrete codes, fitted by maximum likelihood."""

from __future__ import annotations

import pyro
import torch
from pyro.nn import PyroModule

from models import data_plate, register_model
from models.codes import CodeSequence, CodeTransformer


@register_model("code_prior")
class CodePrior(PyroModule):
    """p(k) = Π_i p(k_i | k_<i) over a grid of L codes in raster order, each in {0..K-1}: a
    small causal transformer (van den Oord et al. 2017 fit a PixelCNN; Esser et al. 2021 a
    transformer). A fully observed model: trained with ``fit`` and the ``empty`` guide, the
    ELBO is log p(k) itself. The VQ-VAE (``models/vqvae.py``) holds one as its prior.

    ========  ===========  =================================
    site      event shape  plate
    ========  ===========  =================================
    ``x``     (L,)         data (the code grids; observed)
    ========  ===========  =================================
    """

    def __init__(self, num_codes: int = 512, x_dim: int = 49, d_model: int = 64,
                 heads: int = 4, layers: int = 2):
        super().__init__()
        self.num_codes, self.length = num_codes, x_dim
        self.net = CodeTransformer(num_codes, x_dim, d_model, heads, layers)

    def forward(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None):
        with data_plate(x, y):
            return pyro.sample("x", CodeSequence(self.net, self.num_codes, self.length), obs=x)
