"""Importance-weighted estimates of log p(x), one per data point (Burda et al. 2016).

    log p̂(x) = log (1/K) Σ_k p(x, z_k) / q(z_k | x),     z_k ~ q(· | x)

Every log-density is read from Pyro traces: the guide runs inside a ``pyro.plate`` of
particles, the model is replayed on its draws, and each site's log-density is reduced to
one number per (particle, data point). So any pair that follows the contract is scored,
hierarchical and conditional ones included. K is split into chunks that bound memory, and
the chunks are combined with a running logsumexp.
"""

from __future__ import annotations

import contextlib
import functools
import math
import weakref
from dataclasses import dataclass, field

import pyro
import torch
from tqdm import tqdm

from inference.capture import Captured
from inference.check import non_density_site
from inference.data import as_data
from inference.diagnostics import psis_khat
from inference.plates import whole_plates
from inference.programs import device_of, owner, program
from inference.traces import log_weights, particle_dim, sample_sites
from inference.validate import optional, positive_int

# Largest particle x point x feature tensor one chunk may create (elements); the decoder's
# output and its elementwise log-density are the big ones. 2**25 floats is 128 MiB.
ELEMENT_BUDGET = 2**25
# Chunks are whole multiples of this many particles: torch's CPU normal sampler fills
# blocks of 16 values, so with a one-site guide the draws do not depend on the chunking.
CHUNK_MULTIPLE = 16
# Chunks of the main shape that make compiling the evaluation worth its seconds.
EVAL_COMPILE_AFTER = 50


@dataclass
class ImportanceSummary:
    """Per-data-point results of one importance-sampling pass; tensors are (N,) unless noted.

    ``log_likelihood`` is log p̂(x); ``elbo`` the mean of log w over the K particles (a
    K-sample estimate of the ELBO); ``log_lik`` the mean of log p(x | z) (reconstruction);
    ``ess`` the effective sample size (Σw)² / Σw² of the normalized weights;
    ``latent_means`` E_q[z | x] per continuous latent site, (N, d); ``log_weights`` (K, N)
    if kept.
    """

    log_likelihood: torch.Tensor
    elbo: torch.Tensor
    log_lik: torch.Tensor
    ess: torch.Tensor
    num_samples: int
    latent_means: dict[str, torch.Tensor] = field(default_factory=dict)
    log_weights: torch.Tensor | None = None
    fast_path: str = "off"
    khat: torch.Tensor | None = None  # (N,) Pareto k̂ of each point's weights, if asked

    @property
    def mc_stderr(self) -> torch.Tensor:
        """Delta-method Monte Carlo standard error of each log p̂(x), √(1/ESS − 1/K)."""
        return (1 / self.ess - 1 / self.num_samples).clamp(min=0).sqrt()


def _chunk(model, guide, x, y, *, k: int, dim: int):
    with whole_plates(len(x)):  # every point of the batch, at scale 1 (inference.plates)
        log_w, log_lik, g = log_weights(model, guide, x, y, k, dim)
    n = len(x)  # one particle has no particle dim: every draw becomes (k, N, *event)
    return log_w, log_lik, {name: site["value"].reshape(k, n, *site["fn"].event_shape)
                            for name, site in sample_sites(g)
                            if not site["is_observed"] and not site["fn"].support.is_discrete}


@torch.no_grad()
def chunk_log_weights(model, guide, x, y, k: int, dim: int):
    """Draw ``k`` particles for each row of x; return log w (k, N), log p(x | z) (k, N)
    and the guide's draws ``{site: (k, N, *event)}``. See :func:`inference.traces.log_weights`."""
    return _chunk(model, guide, x, y, k=k, dim=dim)


# Compiled chunk functions, kept per model for later calls: {model: {key: Captured}}.
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _compiled_chunks(model, guide, calls: int, k: int, dim: int, fast) -> Captured | None:
    """The chunk computation compiled for its most common shape, where that pays off."""
    if fast not in (False, "auto", "compile"):
        raise ValueError(f"fast must be False, 'auto' or 'compile', got {fast!r}")
    model_owner, guide_owner = owner(model), owner(guide)
    if fast is False or (fast == "auto" and calls < EVAL_COMPILE_AFTER) or None in (
            model_owner, guide_owner):
        return None  # functions have no module whose parameters a graph could take
    per_model = _COMPILED.setdefault(model_owner, {})
    key = (id(guide_owner), k, dim)
    if key not in per_model or per_model[key][0]() is not guide_owner:
        captured = Captured(functools.partial(_chunk, k=k, dim=dim), model, guide,
                            compile=True, capture_after=1, grad=False)
        per_model[key] = (weakref.ref(guide_owner), captured)
    return per_model[key][1]


class _Accumulator:
    """Running sums over chunks of particles for one batch of N data points."""

    def __init__(self):
        self.lse = self.lse2 = self.sum_lw = self.sum_lik = None
        self.z_sums: dict[str, torch.Tensor] = {}
        self.chunks: list[torch.Tensor] = []
        self.khat: torch.Tensor | None = None
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


def pair_and_data(model, guide, x, y=None, *, empty: str):
    """``model`` and ``guide`` as programs, ``x`` (with ``y``) as data on the pair's device,
    and that device; ``empty`` is the error's start when there is no data point."""
    model, guide = program(model, "model"), program(guide, "guide")
    data = as_data(x if y is None else (x, y))
    if len(data) == 0:
        raise ValueError(f"{empty}, got none")
    device = device_of(model, guide)
    return model, guide, data.to(device), device


@torch.no_grad()
def importance_sample(model, guide, x, *, y=None, num_samples: int = 5000,
                      chunk_size: int | None = None, batch_size: int | None = None,
                      return_log_weights: bool = False, progress: bool = False,
                      fast: bool | str = "auto", seed: int | None = None,
                      first_index: int = 0, khat: bool = False) -> ImportanceSummary:
    """One importance-sampling pass over ``x`` with ``num_samples`` particles per point.

    ``x`` is a tensor (N, D) (``y`` its labels) or anything :func:`~inference.fit` takes.
    Points go through in batches of ``batch_size`` and particles in chunks of
    ``chunk_size``; by default both are sized so that no chunk creates a particle x point x
    feature tensor larger than :data:`ELEMENT_BUDGET` elements. Gradients are off.
    ``progress`` shows a tqdm bar over the batches. ``fast="auto"`` compiles the chunk
    computation for its main shape (:mod:`inference.capture`) when that shape recurs at
    least :data:`EVAL_COMPILE_AFTER` times, ``"compile"`` always, ``False`` never; the
    compiled chunks draw the same particles and give the same numbers to float rounding.
    With ``seed``, each batch draws from torch's generator seeded by :func:`batch_seed` of
    ``seed`` and its first point's index (counted from ``first_index``), so a point's
    estimate does not depend on the batches before it: a set split into runs of whole
    batches gives what one pass does (:mod:`inference.distributed`). The generator's state
    is restored afterwards. ``khat=True`` adds each point's Pareto k̂
    (:func:`~inference.diagnostics.psis_khat`), computed batch by batch, so the (K, N)
    weights need not be kept.
    """
    positive_int("num_samples", num_samples)
    optional(positive_int, "chunk_size", chunk_size)
    optional(positive_int, "batch_size", batch_size)
    model, guide, data, device = pair_and_data(model, guide, x, y,
                                               empty="importance sampling needs at least "
                                                     "one data point")
    head_x, head_y = data.head(1)
    refused = non_density_site(model, head_x, head_y)
    if refused:
        raise ValueError(f"log p(x) is not defined for this model: its site {refused!r} is "
                         "scored by a cross-entropy, not a density (grey_cross_entropy); train "
                         "with likelihood='continuous_bernoulli' to score grey levels")
    batch, chunk = default_sizes(len(data), head_x[0].numel(), num_samples, batch_size,
                                 chunk_size)
    dim = particle_dim(model, guide, head_x, head_y)
    compiled = _compiled_chunks(model, guide, (len(data) // batch) * (num_samples // chunk),
                                chunk, dim, fast)
    results = []
    bar = tqdm(total=math.ceil(len(data) / batch), desc=f"log p(x), K={num_samples}",
               disable=not progress, leave=False, dynamic_ncols=True)
    fork = contextlib.nullcontext() if seed is None else torch.random.fork_rng(
        devices=[device] if device.type == "cuda" else [])
    with bar, fork, pyro.validation_enabled(False):
        for i, (xb, yb) in enumerate(data.batches(batch)):
            if seed is not None:
                torch.manual_seed(batch_seed(seed, first_index + i * batch))
            acc = _Accumulator()
            for start in range(0, num_samples, chunk):
                k = min(chunk, num_samples - start)
                main = compiled is not None and k == chunk and len(xb) == batch
                out = compiled(xb, yb) if main else chunk_log_weights(model, guide, xb, yb, k, dim)
                acc.add(*out, keep=return_log_weights or khat)
            if khat:
                acc.khat = psis_khat(torch.cat(acc.chunks)).khat
                acc.chunks = acc.chunks if return_log_weights else []
            results.append(acc)
            bar.update()
    summary = _summarize(results, num_samples, return_log_weights)
    summary.fast_path = "eager" if compiled is None else compiled.note
    return summary


@torch.no_grad()
def is_point_mass(guide, x: torch.Tensor, y: torch.Tensor | None = None) -> bool:
    """Whether every latent site of the guide is a point mass (``Delta``): its bound is then
    the same for any number of importance samples (the VQ-VAE's guide)."""
    guide = program(guide, "guide")
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        tr = pyro.poutine.trace(guide).get_trace(x, y)
    latent = [s["fn"] for _, s in sample_sites(tr) if not s["is_observed"]]
    return bool(latent) and all(isinstance(getattr(fn, "base_dist", fn), pyro.distributions.Delta)
                                for fn in latent)


def batch_seed(seed: int, first_index: int) -> int:
    """The seed of the importance-sampling batch whose first point is ``first_index``."""
    return (seed * 1_000_003 + first_index) % 2**63


def _summarize(results: list[_Accumulator], k: int, keep: bool) -> ImportanceSummary:
    dtype = results[0].dtype  # the model's: float64 pairs get float64 estimates
    cat = lambda key: torch.cat([getattr(a, key) for a in results]).to(dtype)  # noqa: E731
    lse, lse2 = cat("lse"), cat("lse2")
    means = {n: torch.cat([a.z_sums[n] for a in results]).to(dtype) / k
             for n in results[0].z_sums}
    return ImportanceSummary(
        log_likelihood=lse - math.log(k), elbo=cat("sum_lw") / k, log_lik=cat("sum_lik") / k,
        ess=(2 * lse - lse2).exp(), num_samples=k, latent_means=means,
        log_weights=torch.cat([torch.cat(a.chunks) for a in results], dim=1) if keep else None,
        khat=cat("khat") if results[0].khat is not None else None)


def iw_log_likelihood(model, guide, x, *, y=None, num_samples: int = 5000,
                      chunk_size: int | None = None, batch_size: int | None = None,
                      return_log_weights: bool = False, fast: bool | str = "auto",
                      seed: int | None = None):
    """Per-data-point importance-weighted estimates of log p(x), a tensor (N,).

    With ``return_log_weights=True`` returns ``(estimates, log_weights)``, the latter
    (K, N). When the model also observes ``y`` the estimate is of log p(x, y). On the CPU,
    for a guide with one latent site, the draws do not depend on ``chunk_size``: chunked
    and unchunked runs agree under the same seed. ``fast`` and ``seed`` (per-batch seeding):
    see :func:`importance_sample`.
    """
    s = importance_sample(model, guide, x, y=y, num_samples=num_samples, chunk_size=chunk_size,
                          batch_size=batch_size, return_log_weights=return_log_weights,
                          fast=fast, seed=seed)
    return (s.log_likelihood, s.log_weights) if return_log_weights else s.log_likelihood
