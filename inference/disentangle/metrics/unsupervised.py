"""Unsupervised scores of the codes, needing no factors: disentanglement_lib's
``evaluation/metrics/unsupervised_metrics.py`` (Locatello et al. 2019)."""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch

from inference.disentangle.factors import GroundTruthData
from inference.disentangle.metrics.utils import (
    Representation,
    discrete_mutual_info,
    factor_codes,
    generator_of,
    histogram_discretize,
)


def gaussian_total_correlation(cov: np.ndarray) -> float:
    """KL(N(0, Σ) || Π_j N(0, Σ_jj)) = ½ (Σ_j log Σ_jj − log det Σ), nats."""
    return float(0.5 * (np.sum(np.log(np.diag(cov))) - np.linalg.slogdet(cov)[1]))


def gaussian_wasserstein_correlation(cov: np.ndarray) -> float:
    """The squared 2-Wasserstein distance between N(0, Σ) and N(0, diag Σ):
    2 tr Σ − 2 tr (Σ diag Σ)^½."""
    root = scipy.linalg.sqrtm(cov * np.diag(cov)[:, None])
    return float(2 * np.trace(cov) - 2 * np.trace(root).real)


def unsupervised_scores(data: GroundTruthData, representation: Representation,
                        generator: torch.Generator | int | None = None, *,
                        num_train: int = 10_000, num_bins: int = 20) -> dict:
    """``gaussian_total_correlation`` of the codes' covariance (0 for independent
    dimensions), ``gaussian_wasserstein_correlation`` (and ``_norm``, divided by the total
    variance) and ``mutual_info_score``, the mean discretized mutual information between
    distinct code dimensions; ``num_train`` (10,000) random points. The factors only choose
    the points."""
    codes, _ = factor_codes(data, representation, num_train, generator_of(generator))
    cov = np.cov(codes, rowvar=False)  # (d, d)
    mi = discrete_mutual_info(*(2 * [histogram_discretize(codes, num_bins)]))  # (d, d)
    np.fill_diagonal(mi, 0)
    d = codes.shape[1]
    wasserstein = gaussian_wasserstein_correlation(cov)
    return {"gaussian_total_correlation": gaussian_total_correlation(cov),
            "gaussian_wasserstein_correlation": wasserstein,
            "gaussian_wasserstein_correlation_norm": wasserstein / float(np.trace(cov)),
            "mutual_info_score": float(mi.sum() / (d * d - d)) if d > 1 else 0.0}
