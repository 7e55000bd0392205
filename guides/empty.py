"""The guide of a model without latent variables."""

from __future__ import annotations

import torch
from pyro.nn import PyroModule

from guides import register_guide


@register_guide("empty")
class EmptyGuide(PyroModule):
    """No latent site: with a fully observed model (such as ``code_prior``) every ELBO is
    log p(x) itself, and ``fit`` maximizes the likelihood.

    ========  ===========  =====================
    site      event shape  plate
    ========  ===========  =====================
    (none)
    ========  ===========  =====================
    """

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        return None
