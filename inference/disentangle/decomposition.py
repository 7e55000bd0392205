"""The ELBO's KL term split three ways (Chen, Li, Grosse & Duvenaud 2018, eq. 2):

    E_x KL(q(z | x) || p(z)) = I_q(z; n)                      index-code mutual information
                             + KL(q(z) || Π_j q(z_j))          total correlation
                             + Σ_j KL(q(z_j) || p(z_j))        dimension-wise KL

for any pair whose guide samples one diagonal Gaussian latent site and whose prior is a
diagonal Gaussian. q(z) = (1/M) Σ_n q(z | x_n) is the aggregate posterior of M data points
(a seeded random subset), computed exactly over them (O(M²d), in chunks); each point gets
one draw z_i ~ q(z | x_i). The three terms telescope: on the same draws they sum exactly to
the Monte Carlo KL term, mean_i [log q(z_i | x_i) − log p(z_i)], whose expectation is the
closed-form KL. The mutual information is at most log M.
"""

from __future__ import annotations

import math

import pyro.poutine as poutine
import torch
from torch.distributions import Normal, kl_divergence

from inference.data import TensorData, as_data
from inference.disentangle.gaussian import latent_site, log_normal, normal_parts, pairwise_log_q
from inference.programs import device_of, program


def _gaussians(model, guide, data, batch_size: int):
    """Per point: the guide's (loc, scale) and the prior's (loc, scale), each (M, d)."""
    parts = [], [], [], []
    for x, y in data.batches(batch_size):
        g = poutine.trace(guide).get_trace(x, y)
        name = latent_site(g)
        m = poutine.trace(poutine.replay(model, trace=g)).get_trace(x, y)
        loc, scale = normal_parts(g.nodes[name]["fn"], name)
        p_loc, p_scale = normal_parts(m.nodes[name]["fn"], name)
        for store, t in zip(parts, (loc, scale, p_loc, p_scale), strict=True):
            store.append(t.expand_as(loc).double())
    return [torch.cat(p) for p in parts]


@torch.no_grad()
def elbo_decomposition(model, guide, data, *, num_points: int | None = 5000, seed: int = 0,
                       batch_size: int = 1000, chunk: int = 128) -> dict:
    """Index-code MI, total correlation and dimension-wise KL of the aggregate posterior of
    ``num_points`` random points of ``data`` (all of it if None or fewer), in nats.

    Returns those three (``index_code_mi``, ``total_correlation``, ``dimwise_kl`` and its
    ``dimwise_kl_per_dim``), their sum ``kl`` (the Monte Carlo KL term on the same draws)
    with its standard error ``kl_se``, the closed-form ``kl_analytic``, and ``num_points``.
    """
    model, guide = program(model, "model"), program(guide, "guide")
    data = as_data(data)
    if num_points is not None and num_points < len(data):
        if not isinstance(data, TensorData):
            raise ValueError("a random subset needs TensorData; pass num_points=None")
        data = data.subset(num_points, seed=seed)
    data = data.to(device_of(model, guide))
    loc, scale, p_loc, p_scale = _gaussians(model, guide, data, batch_size)  # (M, d) each
    m = len(loc)
    eps = torch.randn(loc.shape, generator=torch.Generator().manual_seed(seed),
                      dtype=torch.float64).to(loc.device)
    z = loc + scale * eps  # (M, d): one draw per point
    log_qzx = log_normal(z, loc, scale).sum(-1)  # (M,)
    log_pz = log_normal(z, p_loc, p_scale)  # (M, d)
    log_qz, log_qzj = torch.empty(m, dtype=z.dtype, device=z.device), torch.empty_like(z)
    for start in range(0, m, chunk):
        mat = pairwise_log_q(z[start:start + chunk], loc, scale)  # (c, M, d)
        log_qz[start:start + chunk] = torch.logsumexp(mat.sum(-1), 1) - math.log(m)
        log_qzj[start:start + chunk] = torch.logsumexp(mat, 1) - math.log(m)
    mi, tc = log_qzx - log_qz, log_qz - log_qzj.sum(-1)
    dim_kl = log_qzj - log_pz  # (M, d)
    kl = mi + tc + dim_kl.sum(-1)
    analytic = kl_divergence(Normal(loc, scale), Normal(p_loc, p_scale)).sum(-1)
    return {"index_code_mi": mi.mean().item(), "total_correlation": tc.mean().item(),
            "dimwise_kl": dim_kl.sum(-1).mean().item(),
            "dimwise_kl_per_dim": dim_kl.mean(0).tolist(), "kl": kl.mean().item(),
            "kl_se": (kl.std() / math.sqrt(m)).item() if m > 1 else float("nan"),
            "kl_analytic": analytic.mean().item(), "num_points": m}
