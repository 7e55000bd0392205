"""Log-densities of a pair read from Pyro traces, one number per (particle, data point).

The guide runs inside ``pyro.plate("particles", k)``; the model is replayed on its draws.
Every sample site's log-density (with its plate scale and mask) is reduced to shape
(k, N). Evaluation (:mod:`inference.marginal`), per-epoch scores and the training
objectives (:mod:`inference.objectives`) all read densities through this one module.
"""

from __future__ import annotations

import contextlib

import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.util import site_is_subsample
from torch.distributions import kl_divergence

from inference.plates import whole_plates
from inference.programs import sample_sites


def particle_dim(model, guide, x: torch.Tensor, y: torch.Tensor | None) -> int:
    """The dim for a particle plate: left of every plate that model or guide opens.

    The probe runs under a forked RNG, so it does not shift later draws."""
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.no_grad(), torch.random.fork_rng(devices=devices), whole_plates(len(x)):
        g = poutine.trace(guide).get_trace(x, y)
        m = poutine.trace(poutine.replay(model, trace=g)).get_trace(x, y)
    dims = [f.dim for tr in (g, m) for _, s in sample_sites(tr)
            for f in s["cond_indep_stack"] if f.vectorized]
    return min([-1, *dims]) - 1


def per_point(log_prob: torch.Tensor, dim: int, k: int, n: int) -> torch.Tensor:
    """Reduce a site's log-density to (k, n): sum the plates between particles and data."""
    lp = log_prob.reshape((1,) * (-dim - log_prob.dim()) + log_prob.shape)
    if lp.dim() != -dim or lp.shape[0] not in (1, k) or lp.shape[-1] not in (1, n):
        raise ValueError(f"a log-density of shape {tuple(log_prob.shape)} does not fit "
                         f"(particles {k}, ..., points {n}) with the particle plate at dim "
                         f"{dim}; a site has batch dims left of the particle plate")
    if lp.dim() > 2:
        lp = lp.sum(dim=tuple(range(1, lp.dim() - 1)))
    return lp.expand(k, n)


def _check_per_point(name: str, site: dict) -> None:
    if not any(f.vectorized and f.dim == -1 for f in site["cond_indep_stack"]):
        raise ValueError(f"site {name!r} is not inside a plate over the data points at dim -1 "
                         f"(pyro.plate('data', len(x))); per-point scores need every sample "
                         f"site there")


def data_points(tr: poutine.Trace, n: int) -> int:
    """How many data points a trace's sites score: the size of their plate at dim -1, which
    is ``n`` (the batch's) unless the plate subsamples the batch for training
    (:mod:`inference.plates`); a plate without a size counts as the batch's."""
    sizes = {f.size for _, s in sample_sites(tr) for f in s["cond_indep_stack"]
             if f.vectorized and f.dim == -1 and f.size != -1}
    return sizes.pop() if len(sizes) == 1 else n


def summed_log_prob(tr: poutine.Trace, dim: int, k: int, n: int) -> torch.Tensor:
    """Σ over a trace's sample sites of their log-densities, per particle and point (k, n)."""
    tr.compute_log_prob(lambda name, site: not site_is_subsample(site))
    parts = []
    for name, site in sample_sites(tr):
        _check_per_point(name, site)
        parts.append(per_point(site["log_prob"], dim, k, n))
    return torch.stack(parts).sum(0)


def particle_traces(model, guide, x, y, k: int, dim: int):
    """(guide trace, model trace) with ``k`` particles per data point.

    One particle needs no plate (the sites keep their (N, ...) shapes, as in Pyro's
    ``Trace_ELBO``): the same draws, with networks fed 2-D inputs.
    """
    with pyro.plate("particles", k, dim=dim) if k > 1 else contextlib.nullcontext():
        g = poutine.trace(guide).get_trace(x, y)
        m = poutine.trace(poutine.replay(model, trace=g)).get_trace(x, y)
    return g, m


def log_weights(model, guide, x, y, k: int, dim: int, *, analytic_kl: bool = False):
    """log w = log p(x, z) − log q(z | x) per particle and point, shape (k, N), with the
    observed sites' part log p(x | z) (k, N) and the guide's trace (its draws are the
    sites' values, shape (k, N, ...)).

    ``analytic_kl=True`` replaces log p(z) − log q(z | x) of each latent site by
    −KL(q || p) where torch knows it in closed form (as ``TraceMeanField_ELBO`` does); the
    result then has the same expectation with less variance.
    """
    g, m = particle_traces(model, guide, x, y, k, dim)
    n = data_points(m, len(x))
    keep = lambda name, site: not site_is_subsample(site)  # noqa: E731
    g.compute_log_prob(keep)
    m.compute_log_prob(keep)
    log_w = log_lik = torch.zeros((), dtype=x.dtype, device=x.device)
    closed = set()
    for name, site in sample_sites(m):
        _check_per_point(name, site)
        if site["is_observed"]:
            lp = per_point(site["log_prob"], dim, k, n)
            log_lik = log_lik + lp
        elif analytic_kl and (kl := _kl(g.nodes[name], site)) is not None:
            lp = -per_point(kl, dim, k, n)
            closed.add(name)
        else:
            lp = per_point(site["log_prob"], dim, k, n)
        log_w = log_w + lp
    for name, site in sample_sites(g):
        _check_per_point(name, site)
        if name not in closed:
            log_w = log_w - per_point(site["log_prob"], dim, k, n)
    return log_w.expand(k, n), log_lik.expand(k, n), g


def _kl(guide_site: dict, model_site: dict) -> torch.Tensor | None:
    try:
        kl = kl_divergence(guide_site["fn"], model_site["fn"])
    except NotImplementedError:
        return None
    scale, mask = guide_site["scale"], guide_site["mask"]
    kl = kl * scale if not (isinstance(scale, float) and scale == 1.0) else kl
    return kl if mask is None else kl * mask


def kl_forms(model, guide, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, str]:
    """How ``analytic_kl=True`` (``--loss meanfield``, Pyro's ``TraceMeanField_ELBO``) treats
    each latent site of the pair: ``"closed form"`` where torch knows KL(q || p) for the two
    distributions, else ``"Monte Carlo (no KL(Q || P))"``, where log p(z) − log q(z | x) is
    used as with ``--loss trace``. Probed on a batch, under a forked RNG."""
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.no_grad(), torch.random.fork_rng(devices=devices), \
            pyro.validation_enabled(False):
        g, m = particle_traces(model, guide, x, y, 1, -2)
    out = {}
    for name, site in sample_sites(m):
        if not site["is_observed"] and name in g.nodes:
            kind = "closed form" if _kl(g.nodes[name], site) is not None else (
                f"Monte Carlo (no KL({type(g.nodes[name]['fn']).__name__} || "
                f"{type(site['fn']).__name__}))")
            out[name] = kind
    return out
