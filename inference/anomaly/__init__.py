"""Anomaly (out-of-distribution) scores of a pair, and how well they separate two sets.

Every score is high for data the model should flag (nats per example):

==============  ============================================================================
``nll``         −log p̂(x), the importance-weighted estimate of
                :func:`inference.marginal.iw_log_likelihood` (Burda et al. 2016).
``regret``      likelihood regret: the ELBO gained by optimizing the guide's output for
                the example alone (Xiao, Yan & Amit 2020; :mod:`.regret`).
``complexity``  −log p̂(x) minus the length of x under a lossless compressor (Serrà et al.
                2020; :mod:`.complexity`).
``ratio``       −log p̂(x) + log p̂_0(x) of a background model trained on perturbed inputs
                (Ren et al. 2019; :mod:`.ratio`).
``typicality``  ``|−log p̂(x) − Ĥ|``, Ĥ the mean on held-out in-distribution data; a batch test
                in the paper (Nalisnick et al. 2019b; :mod:`.typicality`).
==============  ============================================================================

Raw likelihood is known to rank some out-of-distribution sets *above* the training data
(Nalisnick, Matsukawa, Teh, Gorur & Lakshminarayanan, "Do Deep Generative Models Know What
They Don't Know?", ICLR 2019): a VAE trained on Fashion-MNIST finds MNIST digits more
likely than its own test set. The other scores correct for it
(docs/guide/anomaly.md). :mod:`.metrics` gives AUROC, AUPRC and ``FPR@95`` through scikit-learn, and
:mod:`.detect` scores several sets and scores at once, sharing the log p̂(x) they need.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from inference.anomaly.complexity import complexity_scores, compressed_length
from inference.anomaly.metrics import auprc, auroc, bootstrap, fpr_at_tpr, ood_metrics
from inference.anomaly.ratio import PerturbedData, ratio_scores, train_background
from inference.anomaly.regret import Regret, likelihood_regret
from inference.anomaly.typicality import typicality_batches, typicality_scores
from inference.data import TensorData, as_data
from inference.marginal import iw_log_likelihood

SCORES = ("nll", "regret", "complexity", "ratio", "typicality")


def fixed(x) -> TensorData:
    """``x`` as fixed data: one pass over its batches (a dynamically binarized set gets one
    draw), so that every score of an example sees the same values."""
    data = as_data(x)
    if isinstance(data, TensorData) and data.binarize == "none":
        return data
    parts = list(data.batches(4096))
    y = None if parts[0][1] is None else torch.cat([b for _, b in parts])
    return TensorData(torch.cat([a for a, _ in parts]), y,
                      image_shape=getattr(data, "image_shape", None),
                      info=getattr(data, "info", {}))


def anomaly_scores(model, guide, x, *, score: str = "nll", num_samples: int = 1000,
                   background=None, entropy: float | None = None, compressor: str = "auto",
                   regret: dict | None = None, **kwargs) -> torch.Tensor:
    """One anomaly score per example (N,), high for anomalies (module table).

    ``num_samples`` and ``kwargs`` (``seed``, ``batch_size``...) go to ``iw_log_likelihood``
    wherever log p̂(x) is needed; ``regret`` holds :func:`likelihood_regret`'s options
    (``steps``, ``lr``, ``particles``, ``eval_particles``); ``background`` is the
    ``(model, guide)`` of a background pair (``ratio``, :func:`train_background`);
    ``entropy`` is Ĥ (``typicality``; :func:`entropy_estimate`); ``compressor`` that of
    ``complexity`` (:data:`~inference.anomaly.complexity.COMPRESSORS`).
    """
    if score not in SCORES:
        raise ValueError(f"unknown anomaly score {score!r}; choose one of {', '.join(SCORES)}")
    if score == "ratio" and background is None:
        raise ValueError("the ratio score needs a background pair: background=(model, guide) "
                         "trained by train_background")
    if score == "typicality" and entropy is None:
        raise ValueError("the typicality score needs Ĥ, the mean −log p̂(x) of held-out "
                         "in-distribution data: entropy=entropy_estimate(model, guide, valid)")
    data = fixed(x)
    if score == "regret":
        return likelihood_regret(model, guide, data, **(regret or {})).regret

    def nll_of(m, g) -> torch.Tensor:
        return -iw_log_likelihood(m, g, data, num_samples=num_samples, **kwargs)

    nll = nll_of(model, guide)
    if score == "complexity":
        return complexity_scores(nll, data, compressor=compressor)
    if score == "ratio":
        return ratio_scores(nll, nll_of(*background))
    if score == "typicality":
        return typicality_scores(nll, entropy)
    return nll


def entropy_estimate(model, guide, reference, *, num_samples: int = 1000, **kwargs) -> float:
    """Ĥ: the mean −log p̂(x) over held-out in-distribution data ``reference``."""
    return float(-iw_log_likelihood(model, guide, fixed(reference), num_samples=num_samples,
                                    **kwargs).mean())


@dataclass
class AnomalyResult:
    """How one score separates out-of-distribution (positive) from in-distribution data:
    AUROC, AUPRC and ``FPR@95`` (:mod:`.metrics`), and both sets' scores."""

    auroc: float
    scores_in: torch.Tensor
    scores_out: torch.Tensor
    auprc: float = float("nan")
    fpr95: float = float("nan")


def anomaly_auroc(model, guide, in_data, out_data, *, score: str = "nll",
                  num_samples: int = 1000, **kwargs) -> AnomalyResult:
    """Score both sets with ``score`` (:func:`anomaly_scores`, same options) and measure
    how well it flags ``out_data``.

    Each set is anything ``iw_log_likelihood`` takes (a tensor (N, D), ``TensorData``...).
    A test split of ``load_dataset`` holds one fixed binarization; give both sets the same
    ``binarize`` to compare like with like. For several scores or sets at once, sharing
    log p̂(x) between scores, use :func:`inference.anomaly.detect.compare`.
    """
    scores_in = anomaly_scores(model, guide, in_data, score=score, num_samples=num_samples,
                               **kwargs)
    scores_out = anomaly_scores(model, guide, out_data, score=score, num_samples=num_samples,
                                **kwargs)
    m = ood_metrics(scores_in, scores_out)
    return AnomalyResult(m["auroc"], scores_in, scores_out, m["auprc"], m["fpr95"])


__all__ = ["SCORES", "AnomalyResult", "PerturbedData", "Regret", "anomaly_auroc",
           "anomaly_scores", "auprc", "auroc", "bootstrap", "complexity_scores",
           "compressed_length", "entropy_estimate", "fixed", "fpr_at_tpr",
           "likelihood_regret", "ood_metrics", "ratio_scores", "train_background",
           "typicality_batches", "typicality_scores"]
