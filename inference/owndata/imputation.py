"""Imputation of a table's missing cells by self-normalised importance sampling (MIWAE).

With z_k ~ q(z | x̃) (x̃: the row as the guide reads it) and weights
w_k = p(x_obs, z_k) / q(z_k | x̃) from :func:`inference.impute.masked_log_weights` (the same
weights as the images' inpainting), Mattei & Frellsen (2019, eq. 8) impute

    E[x_mis | x_obs] ≈ Σ_k w̃_k E[x_mis | z_k],        w̃_k = w_k / Σ_j w_j

cell by cell: the Normal's mean (real, and positive on its log scale), the Poisson's rate
(count), the Bernoulli's probability (binary) and, for a categorical column, the category
whose weighted probability Σ_k w̃_k p(c | z_k) is largest. Multiple imputation draws M
particles by their weights (sampling-importance-resampling, :func:`inference.impute.impute`)
and one x_mis ~ p(x | z) from each.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import pyro
import pyro.poutine as poutine
import torch

from inference.data import TensorData
from inference.diagnostics import effective_sample_size
from inference.impute import _resample, masked_log_weights
from inference.marginal import ELEMENT_BUDGET
from inference.programs import device_of, program
from inference.traces import particle_dim


@dataclass
class TableImputation:
    """``mean`` (N, D): the single imputation (observed cells as given), in the scaled units
    of ``x``; ``probs`` {column: (N, D)} the weighted probability of the imputed value of a
    binary or categorical cell; ``draws`` (M, N, D) or None; ``ess`` (N,) of the weights."""

    mean: torch.Tensor
    draws: torch.Tensor | None
    ess: torch.Tensor


def _cells(fn):
    while not hasattr(fn, "category_probs"):
        fn = fn.base_dist  # Independent, then MaskedDistribution, then Columns
    return fn


def _decoded(model, draws: dict, x, k: int, dim: int):
    """The tabular likelihood (batch (k, N, D)) at the k particles ``draws``."""
    with pyro.plate("particles", k, dim=dim) if k > 1 else contextlib.nullcontext():
        tr = poutine.trace(poutine.condition(model, data=draws)).get_trace(x, None)
    return _cells(tr.nodes["x"]["fn"])


def _weighted_mean(cells, w: torch.Tensor) -> torch.Tensor:
    """Σ_k w̃_k E[x | z_k] (N, D); categorical cells: argmax of Σ_k w̃_k p(c | z_k)."""
    k, n = w.shape
    mean = (w[..., None] * cells.mean.expand(k, n, -1)).sum(0)  # (N, D)
    for i, probs in cells.category_probs().items():
        mean[:, i] = (w[..., None] * probs.expand(k, n, -1)).sum(0).argmax(-1).to(mean.dtype)
    return mean


def _batch(model, guide, x, observed, num_samples, multiple, dim):
    k = num_samples
    log_w, _, draws = masked_log_weights(model, guide, x.nan_to_num(), observed, None, k, dim,
                                         views=[x], site="x")
    w = torch.softmax(log_w, 0)  # (K, N)
    mean = _weighted_mean(_decoded(model, draws, x, k, dim), w)
    sampled = None
    if multiple:
        chosen = _resample(log_w, draws, multiple)  # (M, N, ...)
        chosen = {n: z[0] for n, z in chosen.items()} if multiple == 1 else chosen
        sampled = _decoded(model, chosen, x, multiple, dim).sample()
        sampled = sampled.reshape(multiple, *x.shape)
        sampled = torch.where(observed, x.nan_to_num(), sampled)
    return torch.where(observed, x.nan_to_num(), mean), sampled, log_w


@torch.no_grad()
def impute_table(model, guide, data: TensorData, *, num_samples: int = 1000,
                 multiple: int = 0, seed: int | None = 0) -> TableImputation:
    """Single imputation (and ``multiple`` M draws) of the missing cells of ``data`` (a
    :class:`~inference.data.TensorData` with a ``mask``) by a trained tabular pair, with
    K = ``num_samples`` importance particles per row (module docstring)."""
    if data.mask is None:
        raise ValueError("data has no missing-value mask: read it with read_table, or build "
                         "TensorData(x.nan_to_num(), mask=~x.isnan())")
    if num_samples < 1 or multiple < 0:
        raise ValueError(f"need num_samples ≥ 1 and multiple ≥ 0, got {num_samples}, {multiple}")
    if seed is not None:
        pyro.set_rng_seed(seed)
    model, guide = program(model, "model"), program(guide, "guide")
    device = device_of(model, guide)
    x, y = data.serve(slice(None))  # NaN in the missing cells
    x = x.to(device)
    observed = ~torch.isnan(x)
    batch = max(1, ELEMENT_BUDGET // (num_samples * 8 * x.shape[1]))
    means, draws, log_ws = [], [], []
    with pyro.validation_enabled(False):
        dim = particle_dim(model, guide, x[:1], None)
        for start in range(0, len(x), batch):
            xb, ob = x[start:start + batch], observed[start:start + batch]
            mean, sampled, log_w = _batch(model, guide, xb, ob, num_samples, multiple, dim)
            means.append(mean)
            draws.append(sampled)
            log_ws.append(log_w)
    return TableImputation(mean=torch.cat(means).cpu(),
                           draws=torch.cat(draws, 1).cpu() if multiple else None,
                           ess=effective_sample_size(torch.cat(log_ws, 1)).cpu())
