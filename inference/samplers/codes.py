"""A run folder's codes, its samplers fitted once and kept in ``<run>/samplers/``, and the
diagnosis of the prior hole: KL(q(z) || p(z)) of the aggregate posterior."""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import pyro.poutine as poutine
import torch
from torch.distributions import Normal

from inference.samplers.base import LatentSampler, load_sampler, make_sampler

CODES = ("mean", "draw")


def check_continuous(guide, data) -> None:
    """One line for a guide whose latent codes are discrete: a discrete latent site, or the
    VQ-VAE's guide (its ``z`` is the quantized grid, read from its ``codes`` site)."""
    from inference.latent import _latent_site
    from inference.plates import whole_plates

    x, y = data.head(2)
    with whole_plates(len(x)):
        tr = poutine.trace(guide).get_trace(x, y)
    fn = tr.nodes[_latent_site(tr, None)]["fn"]
    if getattr(getattr(fn, "support", None), "is_discrete", False) or "codes" in tr.nodes:
        raise ValueError("this pair's latent codes are discrete (a VQ-VAE's code grid): its "
                         "sampler is its own code_prior, fitted by vae-train "
                         "(docs/guide/vqvae.md); the continuous samplers do not apply")


@torch.no_grad()
def run_codes(guide, data, codes: str = "mean", seed: int = 0):
    """(z (N, d), loc, scale, y): the guide's codes of ``data``: the means of q(z | x)
    (``codes="mean"``) or one draw from it each (``"draw"``, under ``seed``)."""
    from inference.latent import encode_distribution

    if codes not in CODES:
        raise ValueError(f"codes must be one of {', '.join(CODES)}, got {codes!r}")
    check_continuous(guide, data)
    loc, scale = (t.cpu() for t in encode_distribution(guide, data))
    g = torch.Generator().manual_seed(seed)
    z = loc if codes == "mean" else loc + scale * torch.randn(loc.shape, generator=g)
    return z, loc, scale, None if data.y is None else data.y.cpu()


@torch.no_grad()
def aggregate_kl(loc: torch.Tensor, scale: torch.Tensor, *, components: int = 10_000,
                 draws: int = 2000, seed: int = 0) -> float:
    """Monte Carlo KL(q(z) || N(0, I)) in nats, q(z) the mixture (1/M) Σ_i q(z | x_i) of a
    random ``components`` of the diagonal-Gaussian posteriors ``loc``, ``scale`` (N, d):
    ``draws`` z from that mixture, each scored against all M components (the "ELBO
    surgery" term of Hoffman & Johnson 2016; Rosca et al. 2018 measure holes the same way).
    A finite M makes the mixture peakier than q(z): the estimate is biased upward."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(loc), generator=g)[:components]
    mu, sd = loc[idx].double(), scale[idx].double()  # (M, d)
    pick = torch.randint(len(mu), (draws,), generator=g)
    z = mu[pick] + sd[pick] * torch.randn(draws, mu.shape[1], generator=g, dtype=torch.float64)
    log_q = []
    for part in z.split(max(1, 2**22 // (len(mu) * mu.shape[1]))):  # (S, 1, d) vs (M, d)
        lp = Normal(mu, sd).log_prob(part.unsqueeze(1)).sum(-1)  # (S, M)
        log_q.append(torch.logsumexp(lp, -1) - math.log(len(mu)))
    log_p = Normal(0.0, 1.0).log_prob(z).sum(-1)
    return (torch.cat(log_q) - log_p).mean().item()


def sampler_folder(run: Path, name: str, codes: str, options: dict, label=None) -> Path:
    """``<run>/samplers/<name>-<codes>-<hash of the options>[/class<c>]``."""
    key = json.dumps(options, sort_keys=True, default=str)
    folder = run / "samplers" / f"{name}-{codes}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    return folder if label is None else folder / f"class{label}"


def fitted_sampler(folder: Path, name: str, options: dict, train: torch.Tensor,
                   valid: torch.Tensor, *, weights: str, seed: int = 0,
                   progress: bool = False, log=print) -> LatentSampler:
    """The sampler saved in ``folder`` if it was fitted on this run's weights, else fitted
    now (its training checkpoint resumed if one is there) and saved."""
    path = folder / "sampler.pt"
    if path.exists():
        sampler = load_sampler(path)
        if sampler.info.get("run_weights") == weights:
            sampler.options.update(options)  # drawing options (steps) may differ
            return sampler
        log(f"{path} was fitted on other weights of the run: refitting")
        for old in (path, folder / "checkpoint.pt", folder / "best.pt"):
            old.unlink(missing_ok=True)
    start = time.perf_counter()
    sampler = make_sampler(name, **options).fit(train, valid, folder=folder, seed=seed,
                                                progress=progress)
    sampler.info.update(run_weights=weights, fit_seconds=time.perf_counter() - start,
                        train_codes=len(train), valid_codes=len(valid))
    sampler.save(path)
    log(f"{name}: fitted on {len(train)} codes in {sampler.info['fit_seconds']:.1f} s, saved "
        f"{path}")
    return sampler
