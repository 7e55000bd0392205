"""How far to trust an importance-weighted estimate: Pareto k̂ and effective sample size.

Vehtari, Simpson, Gelman, Yao & Gabry (2024), "Pareto smoothed importance sampling":
fitting a generalized Pareto distribution to the largest weights gives k̂; with k̂ > 0.7
the estimate of log p(x) is unreliable for any practical K, and 0.5 < k̂ <= 0.7 means slow
convergence. Yao et al. (2018) use the same k̂ to judge a variational approximation.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np
import torch

KHAT_BAD = 0.7
KHAT_OK = 0.5
# ArviZ fits the Pareto tail to the ceil(min(0.2 K, 3 sqrt(K))) largest weights and needs
# more than 4 of them: below K = 21 every k̂ comes back infinite, which says nothing.
KHAT_MIN_SAMPLES = 21


def load_arviz():
    """ArviZ, imported without its import-time FutureWarning about an upcoming refactor."""
    with warnings.catch_warnings():  # ArviZ announces its coming refactor on import
        warnings.simplefilter("ignore", FutureWarning)
        import arviz
    return arviz


class PSIS(NamedTuple):
    khat: torch.Tensor  # (N,) Pareto shape per data point
    ess: torch.Tensor  # (N,) effective sample size (Σw)² / Σw² of the raw weights


def psis_khat(log_weights: torch.Tensor) -> PSIS:
    """Pareto k̂ per data point (ArviZ's PSIS) and the ESS of the normalized weights.

    ``log_weights`` is (K, N), as returned by ``iw_log_likelihood(...,
    return_log_weights=True)``. Where all K weights of a point are equal (the guide is that
    point's exact posterior) the tail is a point mass and k̂ is -inf: the estimate is exact.
    With fewer than :data:`KHAT_MIN_SAMPLES` weights per point there is no tail to fit, and
    ArviZ's k̂ is +inf for every point.
    """
    if log_weights.dim() != 2:
        raise ValueError(f"log_weights must be (K, N), got shape {tuple(log_weights.shape)}")
    lw = log_weights.detach().double().cpu()
    az = load_arviz()
    with np.errstate(divide="ignore", invalid="ignore"):  # degenerate tails: handled below
        _, khat = az.psislw(lw.T.numpy(), reff=1.0)  # ArviZ wants samples last: (N, K)
    khat = torch.as_tensor(khat, dtype=lw.dtype)
    constant = (lw.max(0).values - lw.min(0).values) <= 1e-9 * lw.abs().max(0).values.clamp(min=1)
    khat = torch.where(constant, -torch.inf, khat)  # ArviZ says +inf for a degenerate tail
    return PSIS(khat.to(log_weights.dtype), effective_sample_size(lw).to(log_weights.dtype))


def effective_sample_size(log_weights: torch.Tensor) -> torch.Tensor:
    """Kish's ESS (Σ w)² / Σ w² of the K weights of each point: (K, N) log w -> (N,)."""
    return (2 * torch.logsumexp(log_weights, 0) - torch.logsumexp(2 * log_weights, 0)).exp()


def khat_summary(khat: torch.Tensor) -> dict[str, float]:
    """Shares of points with k̂ > 0.7 (unreliable) and 0.5 < k̂ <= 0.7, plus max and median."""
    k = khat.double()
    return {"share_khat_above_0.7": (k > KHAT_BAD).double().mean().item(),
            "share_khat_0.5_to_0.7": ((k > KHAT_OK) & (k <= KHAT_BAD)).double().mean().item(),
            "khat_max": k.max().item(), "khat_median": k.median().item()}


def khat_for_arviz(khat: torch.Tensor, num_samples: int):
    """k̂ as ArviZ's ``ELPDData``, ready for ``az.plot_khat`` (ArviZ's threshold for S draws:
    min(1 − 1/log10(S), 0.7))."""
    import xarray

    az = load_arviz()
    good_k = min(1 - 1 / math.log10(num_samples), KHAT_BAD) if num_samples > 10 else KHAT_BAD
    values = xarray.DataArray(khat.detach().double().cpu().numpy(), dims=["point"])
    return az.ELPDData(data=[values, good_k, num_samples, len(khat)],
                       index=["pareto_k", "good_k", "n_samples", "n_data_points"])
