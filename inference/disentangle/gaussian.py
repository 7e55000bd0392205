"""Diagonal Gaussian pieces of a pair's traces: the guide's q(z | x) and the prior p(z),
per dimension, and the matrix log q(z_i | x_j) that the total-correlation estimators need.

The objectives and the ELBO decomposition of this package need, for the pair's one latent
site, the guide's mean and standard deviation per point and dimension, and the prior's
log-density per dimension. They read them from the distributions recorded in Pyro traces,
so any pair whose guide samples ``Normal`` (or ``Normal(...).to_event(1)``, the lab's
``DiagNormal``) works, whatever its site names.
"""

from __future__ import annotations

import math

import torch
from torch.distributions import Independent, Normal

from inference.programs import sample_sites


def normal_parts(fn, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(loc, scale) of a diagonal Normal site distribution, each (..., d)."""
    base = fn
    while isinstance(base, Independent):
        base = base.base_dist
    if not isinstance(base, Normal):
        raise ValueError(f"site {name!r} is {type(fn).__name__}; the disentangling objectives "
                         f"and the ELBO decomposition need a diagonal Normal (Normal(loc, "
                         f"scale).to_event(1)) in guide and prior")
    loc, scale = torch.broadcast_tensors(base.loc, base.scale)
    return loc, scale


def latent_site(guide_trace) -> str:
    """The one latent site of a guide's trace (the objectives here take one)."""
    names = [n for n, s in sample_sites(guide_trace) if not s["is_observed"]]
    if len(names) != 1:
        raise ValueError(f"the guide samples {len(names)} latent sites ({', '.join(names)}); "
                         f"the disentangling objectives and the decomposition take one")
    return names[0]


def check_unscaled(site: dict, objective: str) -> None:
    """Refuse a latent site whose log-density a handler scales (a β handler): the
    objective weighs its own terms."""
    scale = site["scale"]
    if not (isinstance(scale, (int, float)) and scale == 1):
        raise ValueError(f"{objective} weighs its KL terms itself; do not also scale the latent "
                         f"sites (fit(beta=...), --beta or --anneal with this loss)")


def log_normal(z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """log N(z; loc, scale²) elementwise, broadcast."""
    return -0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)


def pairwise_log_q(z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """log q(z_i,d | x_j) for every draw i and point j: (B_z, B_x, d), from z (B_z, d) and
    the guide's loc, scale (B_x, d)."""
    return log_normal(z.unsqueeze(1), loc.unsqueeze(0), scale.unsqueeze(0))


def log_mss_weights(batch: int, dataset_size: int, *, device=None,
                    dtype=torch.float32) -> torch.Tensor:
    """log r_ij of minibatch stratified sampling (Chen et al. 2018, appendix C.2): (B, B).

    Row i estimates q(z_i) = (1/N) Σ_n q(z_i | x_n) from the batch that drew z_i from
    q(z | x_i): weight 1/N on its own point (the diagonal), (N − M)/(N M) on one other point
    (the next one, cyclically) and 1/M on the M − 1 others, M = B − 1. Each row sums to 1,
    and over random batches the estimate of q(z_i) is unbiased. (The authors' code writes
    its 1/N and stratum weights down the first two columns instead of the diagonal:
    rtqichen/beta-tcvae pull request #1.) A batch of one point gets weight 1/N.

    >>> log_mss_weights(3, 10).exp()
    tensor([[0.1000, 0.4000, 0.5000],
            [0.5000, 0.1000, 0.4000],
            [0.4000, 0.5000, 0.1000]])
    """
    n, m = dataset_size, batch - 1
    if batch > n:
        raise ValueError(f"a batch of {batch} points is larger than the dataset size {n}; "
                         f"pass the number of training points as dataset_size")
    if m == 0:
        return torch.full((1, 1), -math.log(n), device=device, dtype=dtype)
    w = torch.full((batch, batch), 1 / m, device=device, dtype=torch.float64)
    rows = torch.arange(batch, device=device)
    w[rows, (rows + 1) % batch] = (n - m) / (n * m)
    w[rows, rows] = 1 / n
    return w.log().to(dtype)
