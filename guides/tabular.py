"""Encoder for mixed-type tables with missing cells: it reads the cells and the mask."""

from __future__ import annotations

import pyro
import torch
from pyro.nn import PyroModule
from torch import nn

from guides import register_guide
from models import data_plate
from models.distributions import DiagNormal
from models.nets import mlp, scale_transform
from models.tabular import column_layout


def encoder_input(x: torch.Tensor, layout: list[dict]) -> torch.Tensor:
    """(..., F) features of a batch x (..., D) with NaN in its missing cells: every column
    zero-filled where missing (Mattei & Frellsen 2019), a count as log(1 + n), a category as
    one-hot, then the mask (1 = observed).

    >>> layout = [{"type": "real", "levels": 1}, {"type": "categorical", "levels": 3}]
    >>> encoder_input(torch.tensor([[0.5, 2.0], [float("nan"), float("nan")]]), layout)
    tensor([[0.5000, 0.0000, 0.0000, 1.0000, 1.0000, 1.0000],
            [0.0000, 0.0000, 0.0000, 0.0000, 0.0000, 0.0000]])
    """
    observed = ~torch.isnan(x)
    filled = x.masked_fill(~observed, 0.0)
    parts = []
    for i, col in enumerate(layout):
        v = filled[..., i]
        if col["type"] == "categorical":
            hot = nn.functional.one_hot(v.long().clamp(0, col["levels"] - 1), col["levels"])
            parts.append(hot.to(x.dtype) * observed[..., i, None])
        else:
            parts.append((v.clamp(min=0).log1p() if col["type"] == "count" else v)[..., None])
    return torch.cat([*parts, observed.to(x.dtype)], -1)


@register_guide("tabular")
class TabularGuide(PyroModule):
    """Amortized diagonal Gaussian encoder of a table's rows with missing cells (the MIWAE
    encoder of Mattei & Frellsen 2019: zero-filled cells next to the mask).

    Variational family::

        h = MLP_φ([x̃, m])          x̃: cells zero-filled where missing (categories one-hot,
                                    counts log(1 + n)), m: the mask, 1 where observed
        z | x ~ Normal(μ_φ(h), diag(σ_φ(h)²))

    ========  ===========  =====================
    site      event shape  plate
    ========  ===========  =====================
    ``z``     (z_dim,)     data
    ========  ===========  =====================
    """

    reads_missing = True  # it is shown NaN in the missing cells (inference.objectives.MIWAE)

    def __init__(self, x_dim: int = 4, z_dim: int = 4, hidden: tuple[int, ...] = (64, 64),
                 activation: str = "softplus", scale: str = "softplus",
                 schema: list[dict] | None = None):
        super().__init__()
        self.layout = column_layout(schema, x_dim)
        self.x_dim, self.z_dim = x_dim, z_dim
        width = sum(c["levels"] for c in self.layout) + x_dim
        self.to_scale = scale_transform(scale)
        self.trunk = mlp([width, *hidden], activation, final_activation=True)
        self.head = nn.Linear(hidden[-1] if hidden else width, 2 * z_dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        with data_plate(x, y):
            loc, raw = self.head(self.trunk(encoder_input(x, self.layout))).chunk(2, dim=-1)
            return pyro.sample("z", DiagNormal(loc, self.to_scale(raw)))  # (N, z_dim)
