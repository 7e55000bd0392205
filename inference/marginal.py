"""Importance-weighted estimates of log p(x), one per data point (Burda et al. 2016).

    log p̂(x) = log (1/K) Σ_k p(x, z_k) / q(z_k | x),     z_k ~ q(· | x)

Every log-density is read from Pyro traces: the guide runs inside a ``pyro.plate`` of
particles, the model is replayed on its draws, and each site's log-density is reduced to
one number per (particle, data point). So any pair that follows the contract is scored,
hierarchical and conditional ones included. K is split into chunks that bound memory, and
the chunks are combined with a running logsumexp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.util import site_is_subsample
from tqdm import tqdm

from inference.data import as_data

# Largest particle x point x feature tensor one chunk may create (elements); the decoder's
# output and its elementwise log-density are the big ones. 2**25 floats is 128 MiB.
ELEMENT_BUDGET = 2**25
# Chunks are whole multiples of this many particles: torch's CPU normal sampler fills
# blocks of 16 values, so with a one-site guide the draws do not depend on the chunking.
CHUNK_MULTIPLE = 16


@dataclass
class ImportanceSummary:
    """Per-data-point results of one importance-sampling pass; tensors are (N,) unless noted.

    ``log_likelihood`` is log p̂(x); ``elbo`` the mean of log w over the K particles (a
    K-sample estimate of the ELBO); ``log_lik`` the mean of log p(x | z) (reconstruction);
    ``ess`` the effective sample size (Σw)² / Σw² of the normalized weights;
    ``latent_means`` E_q[z | x] per latent site, (N, d); ``log_weights`` (K, N) if kept.
    """

    log_likelihood: torch.Tensor
    elbo: torch.Tensor
    log_lik: torch.Tensor
    ess: torch.Tensor
    num_samples: int
    latent_means: dict[str, torch.Tensor] = field(default_factory=dict)
    log_weights: torch.Tensor | None = None

    @property
    def mc_stderr(self) -> torch.Tensor:
        """Delta-method Monte Carlo standard error of each log p̂(x): √(1/ESS − 1/K)."""
        return (1 / self.ess - 1 / self.num_samples).clamp(min=0).sqrt()


def _sample_sites(tr: poutine.Trace):
    return [(n, s) for n, s in tr.nodes.items()
            if s["type"] == "sample" and not site_is_subsample(s)]


def particle_dim(model, guide, x: torch.Tensor, y: torch.Tensor | None) -> int:
    """The dim for a particle plate: left of every plate that model or guide opens."""
    with torch.no_grad():
        g = poutine.trace(guide).get_trace(x, y)
        m = poutine.trace(poutine.replay(model, trace=g)).get_trace(x, y)
    dims = [f.dim for tr in (g, m) for _, s in _sample_sites(tr)
            for f in s["cond_indep_stack"] if f.vectorized]
    return min([-1, *dims]) - 1


def _per_point(log_prob: torch.Tensor, dim: int, k: int, n: int) -> torch.Tensor:
    """Reduce a site's log-density to (k, n): sum the plates between particles and data."""
    lp = log_prob.reshape((1,) * (-dim - log_prob.dim()) + log_prob.shape)
    if lp.dim() > 2:
        lp = lp.sum(dim=tuple(range(1, lp.dim() - 1)))
    return lp.expand(k, n)


def _check_per_point(name: str, site: dict) -> None:
    frames = {f.name: f.dim for f in site["cond_indep_stack"]}
    if frames.get("data") != -1:
        raise ValueError(f"site {name!r} is not inside pyro.plate('data', dim=-1); per-point "
                         f"estimates of log p(x) need every sample site there")


@torch.no_grad()
def chunk_log_weights(model, guide, x, y, k: int, dim: int):
    """Draw ``k`` particles for each row of x; return log w (k, N), log p(x | z) (k, N)
    and the guide's draws {site: (k, N, *event)}."""
    n = len(x)
    with pyro.plate("particles", k, dim=dim):
        g = poutine.trace(guide).get_trace(x, y)
        m = poutine.trace(poutine.replay(model, trace=g)).get_trace(x, y)
    g.compute_log_prob(lambda name, site: not site_is_subsample(site))
    m.compute_log_prob(lambda name, site: not site_is_subsample(site))
    log_w = torch.zeros(k, n, dtype=x.dtype, device=x.device)
    log_lik = torch.zeros_like(log_w)
    for name, site in _sample_sites(m):
        _check_per_point(name, site)
        lp = _per_point(site["log_prob"], dim, k, n)
        log_w = log_w + lp
        if site["is_observed"]:
            log_lik = log_lik + lp
    draws = {}
    for name, site in _sample_sites(g):
        _check_per_point(name, site)
        log_w = log_w - _per_point(site["log_prob"], dim, k, n)
        draws[name] = site["value"]
    return log_w, log_lik, draws


class _Accumulator:
    """Running sums over chunks of particles for one batch of N data points."""

    def __init__(self):
        self.lse = self.lse2 = self.sum_lw = self.sum_lik = None
        self.z_sums: dict[str, torch.Tensor] = {}
        self.chunks: list[torch.Tensor] = []
        self.dtype = torch.get_default_dtype()

    def add(self, log_w, log_lik, draws, keep: bool) -> None:
        self.dtype = log_w.dtype
        lw = log_w.double()  # (k, N); float64 keeps the running sums exact enough
        parts = (torch.logsumexp(lw, 0), torch.logsumexp(2 * lw, 0), lw.sum(0),
                 log_lik.double().sum(0))
        if self.lse is None:
            self.lse, self.lse2, self.sum_lw, self.sum_lik = parts
        else:
            self.lse = torch.logaddexp(self.lse, parts[0])
            self.lse2 = torch.logaddexp(self.lse2, parts[1])
            self.sum_lw, self.sum_lik = self.sum_lw + parts[2], self.sum_lik + parts[3]
        for name, z in draws.items():
            s = z.sum(0, dtype=torch.float64).reshape(z.shape[1], -1)  # (N, d)
            self.z_sums[name] = s if name not in self.z_sums else self.z_sums[name] + s
        if keep:
            self.chunks.append(log_w)


def default_sizes(n: int, features: int, num_samples: int, batch_size: int | None,
                  chunk_size: int | None) -> tuple[int, int]:
    """(points per batch, particles per chunk) keeping chunk x batch x features under
    :data:`ELEMENT_BUDGET`; chunks are rounded down to multiples of 16 particles."""
    budget = max(1, ELEMENT_BUDGET // max(features, 1))
    batch = batch_size or min(n, max(1, budget // min(num_samples, 256)))
    chunk = chunk_size or max(1, budget // batch)
    if chunk < num_samples and chunk >= CHUNK_MULTIPLE:
        chunk -= chunk % CHUNK_MULTIPLE
    return batch, min(chunk, num_samples)


@torch.no_grad()
def importance_sample(model, guide, x, *, y=None, num_samples: int = 5000,
                      chunk_size: int | None = None, batch_size: int | None = None,
                      return_log_weights: bool = False,
                      progress: bool = False) -> ImportanceSummary:
    """One importance-sampling pass over ``x`` with ``num_samples`` particles per point.

    ``x`` is a tensor (N, D) (``y`` its labels) or anything :func:`~inference.fit` takes.
    Points go through in batches of ``batch_size`` and particles in chunks of
    ``chunk_size``; by default both are sized so that no chunk creates a particle x point x
    feature tensor larger than :data:`ELEMENT_BUDGET` elements. Gradients are off.
    ``progress`` shows a tqdm bar over the batches.
    """
    data = as_data(x if y is None else (x, y))
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    data = data.to(device)
    head_x, head_y = data.head(1)
    batch, chunk = default_sizes(len(data), head_x[0].numel(), num_samples, batch_size,
                                 chunk_size)
    dim = particle_dim(model, guide, head_x, head_y)
    results = []
    bar = tqdm(total=math.ceil(len(data) / batch), desc=f"log p(x), K={num_samples}",
               disable=not progress, leave=False, dynamic_ncols=True)
    with bar, pyro.validation_enabled(False):
        for xb, yb in data.batches(batch):
            acc = _Accumulator()
            for start in range(0, num_samples, chunk):
                k = min(chunk, num_samples - start)
                acc.add(*chunk_log_weights(model, guide, xb, yb, k, dim), keep=return_log_weights)
            results.append(acc)
            bar.update()
    return _summarize(results, num_samples, return_log_weights)


def _summarize(results: list[_Accumulator], k: int, keep: bool) -> ImportanceSummary:
    dtype = results[0].dtype  # the model's: float64 pairs get float64 estimates
    cat = lambda key: torch.cat([getattr(a, key) for a in results]).to(dtype)  # noqa: E731
    lse, lse2 = cat("lse"), cat("lse2")
    means = {n: torch.cat([a.z_sums[n] for a in results]).to(dtype) / k
             for n in results[0].z_sums}
    return ImportanceSummary(
        log_likelihood=lse - math.log(k), elbo=cat("sum_lw") / k, log_lik=cat("sum_lik") / k,
        ess=(2 * lse - lse2).exp(), num_samples=k, latent_means=means,
        log_weights=torch.cat([torch.cat(a.chunks) for a in results], dim=1) if keep else None)


def iw_log_likelihood(model, guide, x, *, y=None, num_samples: int = 5000,
                      chunk_size: int | None = None, batch_size: int | None = None,
                      return_log_weights: bool = False):
    """Per-data-point importance-weighted estimates of log p(x), a tensor (N,).

    With ``return_log_weights=True`` returns ``(estimates, log_weights)``, the latter
    (K, N). When the model also observes ``y`` the estimate is of log p(x, y). On the CPU,
    for a guide with one latent site, the draws do not depend on ``chunk_size``: chunked
    and unchunked runs agree under the same seed.
    """
    s = importance_sample(model, guide, x, y=y, num_samples=num_samples, chunk_size=chunk_size,
                          batch_size=batch_size, return_log_weights=return_log_weights)
    return (s.log_likelihood, s.log_weights) if return_log_weights else s.log_likelihood
