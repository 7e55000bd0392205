"""Mixed-type tables with missing cells: one likelihood per column type (HI-VAE style)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.distributions.torch_distribution import MaskedDistribution
from pyro.nn import PyroModule

from models import data_plate, register_model
from models.nets import StandardNormal, mlp

TYPES = ("real", "positive", "count", "binary", "categorical")


def column_layout(schema: Sequence[dict[str, Any]] | None, x_dim: int) -> list[dict[str, Any]]:
    """The columns as ``[{"name", "type", "levels"}]``: ``schema`` (a table's record, see
    :func:`inference.owndata.tables.read_table`) or ``x_dim`` real columns when None.

    >>> [c["levels"] for c in column_layout([{"type": "real"}, {"type": "categorical",
    ...                                      "categories": ["a", "b", "c"]}], 2)]
    [1, 3]
    """
    if schema is None:
        return [{"name": f"x{i}", "type": "real", "levels": 1} for i in range(x_dim)]
    if len(schema) != x_dim:
        raise ValueError(f"the schema has {len(schema)} columns but x_dim is {x_dim}")
    out = []
    for i, col in enumerate(schema):
        kind = col.get("type")
        if kind not in TYPES:
            raise ValueError(f"column {col.get('name', i)!r}: type must be one of "
                             f"{', '.join(TYPES)}, got {kind!r}")
        levels = len(col.get("categories") or ()) if kind == "categorical" else 1
        if kind == "categorical" and levels < 2:
            raise ValueError(f"column {col.get('name', i)!r}: a categorical column needs its "
                             f"list of categories (two or more)")
        out.append({"name": col.get("name", f"x{i}"), "type": kind, "levels": levels})
    return out


class Columns(dist.TorchDistribution):
    """One cell per column, each with its own family: batch shape (..., D), event ().

    ``params`` (..., P) holds, column after column, the location of a Normal (``real`` and
    ``positive`` columns, scale ``scale``), the log-rate of a Poisson (``count``), the logit
    of a Bernoulli (``binary``) and the L logits of a Categorical over the category index
    (``categorical``). ``log_prob`` is 0 in NaN cells (missing) and never NaN there, nor is
    its gradient. ``mean`` is each cell's expectation, the most probable category for a
    categorical column (:meth:`category_probs` has the probabilities).
    """

    arg_constraints: dict = {}
    support = constraints.real  # a mix of families: the loosest support of them all

    def __init__(self, layout: list[dict], params: torch.Tensor, scale: torch.Tensor,
                 validate_args=None):
        self.layout, self.params, self.scale = layout, params, scale
        starts, s = [], 0
        for col in layout:
            starts.append(s)
            s += col["levels"]
        self.starts = starts
        super().__init__(params.shape[:-1] + (len(layout),), validate_args=False)

    def expand(self, batch_shape, _instance=None) -> Columns:
        shape = torch.Size(batch_shape)
        return Columns(self.layout, self.params.expand(shape[:-1] + self.params.shape[-1:]),
                       self.scale)

    def _cells(self, value: torch.Tensor | None):
        """(family, cell value or None) per column; scales are per real/positive column."""
        j = 0
        for i, (col, s) in enumerate(zip(self.layout, self.starts, strict=True)):
            v = None if value is None else value[..., i]
            p = self.params[..., s:s + col["levels"]]
            if col["type"] in ("real", "positive"):
                fn, j = dist.Normal(p[..., 0], self.scale[j]), j + 1
            elif col["type"] == "count":
                fn = dist.Poisson(p[..., 0].clamp(max=20).exp())
            elif col["type"] == "binary":
                fn = dist.Bernoulli(logits=p[..., 0])
            else:
                fn = dist.Categorical(logits=p)
            yield col, fn, v

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        missing = torch.isnan(value)
        safe = value.masked_fill(missing, 0.0)  # a NaN must not reach a gradient
        parts = []
        for col, fn, v in self._cells(safe):
            v = v.long() if col["type"] == "categorical" else v
            parts.append(fn.log_prob(v))
        lp = torch.stack(torch.broadcast_tensors(*parts), -1)  # (..., D)
        return lp.masked_fill(missing, 0.0)

    @property
    def mean(self) -> torch.Tensor:
        cells = [fn.probs.argmax(-1).to(self.params.dtype) if col["type"] == "categorical"
                 else fn.mean for col, fn, _ in self._cells(None)]
        return torch.stack(torch.broadcast_tensors(*cells), -1)

    def category_probs(self) -> dict[int, torch.Tensor]:
        """{column index: probabilities (..., L)} of the categorical columns."""
        return {i: fn.probs for i, (col, fn, _) in enumerate(self._cells(None))
                if col["type"] == "categorical"}

    def sample(self, sample_shape=()) -> torch.Tensor:
        sample_shape = torch.Size(sample_shape)
        with torch.no_grad():
            cells = [fn.sample(sample_shape).to(self.params.dtype) for _, fn, _ in
                     self._cells(None)]
            return torch.stack(torch.broadcast_tensors(*cells), -1)


@register_model("tabular")
class TabularModel(PyroModule):
    """VAE for a table of mixed column types with missing cells (Nazábal et al. 2020,
    "HI-VAE"; trained on the observed cells as in Mattei & Frellsen 2019, "MIWAE").

    Generative story::

        z      ~ Normal(0, I)                              z in R^z_dim
        h      = MLP_θ(z)                                  z_dim -> hidden -> P
        x_d | z ~ Normal(h_d, σ_d²)                         real; positive (on the log scale)
                  Poisson(exp h_d)                          count
                  Bernoulli(sigmoid h_d)                    binary (category index 0/1)
                  Categorical(softmax h_d)                  categorical (category index)

    σ_d is learned per column (kept above ``min_scale``). Real and positive columns arrive
    standardised (a positive one as its log) by :func:`inference.owndata.tables.scale`.
    Missing cells are NaN in ``x``: the model scores only the observed cells, masking the
    per-cell log-densities with Pyro's ``MaskedDistribution`` (what ``obs_mask`` does for
    its observed part), so log p(x | z) is log p(x_obs | z).

    ========  ===========  =====================================================
    site      event shape  plate
    ========  ===========  =====================================================
    ``z``     (z_dim,)     data
    ``x``     (x_dim,)     data (observed when x is given; NaN cells not scored)
    ========  ===========  =====================================================
    """

    is_table = True  # its rows are not images: image figures skip it (inference.visualize)

    def __init__(self, x_dim: int = 4, z_dim: int = 4, hidden: tuple[int, ...] = (64, 64),
                 activation: str = "softplus", schema: list[dict] | None = None,
                 init_scale: float = 1.0, min_scale: float = 1e-2):
        super().__init__()
        self.layout = column_layout(schema, x_dim)
        self.x_dim, self.z_dim, self.min_scale = x_dim, z_dim, min_scale
        width = sum(c["levels"] for c in self.layout)
        n_scales = sum(c["type"] in ("real", "positive") for c in self.layout)
        self.decoder = mlp([z_dim, *hidden, width], activation)
        self.scale_raw = torch.nn.Parameter(
            torch.full((n_scales,), float(init_scale) - min_scale).log())
        self.prior = StandardNormal(z_dim)

    @property
    def scale(self) -> torch.Tensor:
        """σ of the real and positive columns, in their order (min_scale + exp(raw))."""
        return self.scale_raw.exp() + self.min_scale

    def likelihood(self, z: torch.Tensor) -> Columns:
        """p(x | z) cell by cell, batch shape (..., N, D) for z (..., N, z_dim)."""
        return Columns(self.layout, self.decoder(z), self.scale)

    def forward(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None):
        with data_plate(x, y):
            z = pyro.sample("z", self.prior())
            cells = self.likelihood(z)  # (*particles, N, D)
            if x is not None:
                cells = MaskedDistribution(cells, ~torch.isnan(x))  # observed cells only
            return pyro.sample("x", dist.Independent(cells, 1), obs=x)
