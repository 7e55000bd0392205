"""Disentanglement metrics, decoupled from models: each takes a ground-truth dataset (its
factor sampler and observations), a representation function (observations (n, D) ->
codes (n, d)) and a seeded ``torch.Generator`` (or an integer seed).

For a model/guide pair the representation is the guide's mean of z
(:func:`guide_mean`). Definitions and default sample sizes follow disentanglement_lib
(google-research, ``evaluation/metrics/``; Locatello et al. 2019, "Challenging common
assumptions in the unsupervised learning of disentangled representations"); each
function's docstring names its file and any deviation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from inference.disentangle.factors import GroundTruthData
from inference.disentangle.metrics.classifier import beta_vae_score, factor_vae_score
from inference.disentangle.metrics.dci import dci
from inference.disentangle.metrics.information import mig, modularity_explicitness, sap
from inference.disentangle.metrics.unsupervised import unsupervised_scores
from inference.disentangle.metrics.utils import Representation

# name -> (function, the key of its headline number)
METRICS: dict[str, tuple[Callable, str]] = {
    "beta_vae": (beta_vae_score, "eval_accuracy"),
    "factor_vae": (factor_vae_score, "eval_accuracy"),
    "mig": (mig, "mig"),
    "sap": (sap, "sap"),
    "dci": (dci, "disentanglement"),
    "modularity": (modularity_explicitness, "modularity"),
    "unsupervised": (unsupervised_scores, "gaussian_total_correlation"),
}


def guide_mean(guide, site: str | None = None) -> Representation:
    """The representation of a pair: E_q[z | x] of the guide's latent ``site`` (default
    ``z``, else its first), for any guide the lab takes."""
    from inference.latent import encode

    def representation(x: torch.Tensor) -> torch.Tensor:
        return encode(guide, x, site=site)

    return representation


def scores(data: GroundTruthData, representation: Representation,
           names: Sequence[str] = tuple(METRICS), seed: int = 0,
           options: dict[str, dict] | None = None) -> dict[str, dict]:
    """Every metric of ``names``, each with its own generator seeded by ``seed`` (so one
    metric's numbers do not depend on which others ran); ``options`` maps a metric's name
    to keyword arguments (sample sizes)."""
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}; choose from {', '.join(METRICS)}")
    out = {}
    for name in names:
        fn, _ = METRICS[name]
        out[name] = fn(data, representation, torch.Generator().manual_seed(seed),
                       **(options or {}).get(name, {}))
    return out


__all__ = ["METRICS", "beta_vae_score", "dci", "factor_vae_score", "guide_mean", "mig",
           "modularity_explicitness", "sap", "scores", "unsupervised_scores"]
