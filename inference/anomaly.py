"""Anomaly scores from the model's evidence, and the AUROC that separates two sets by them.

An example's score is −log p̂(x), the importance-weighted estimate of
:func:`inference.marginal.iw_log_likelihood` (Burda et al. 2016): data the model finds
unlikely score high. The AUROC is the Mann–Whitney U statistic over the two sets' scores,
U / (n_in · n_out) = P(score_out > score_in) + ½ P(tie) (Hanley & McNeil 1982). Likelihoods
of deep generative models are known to rank some out-of-distribution sets *above* the
training data (Nalisnick et al., "Do Deep Generative Models Know What They Don't Know?",
ICLR 2019), so the AUROC is measured, never assumed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from inference.marginal import iw_log_likelihood


def anomaly_scores(model, guide, x, *, num_samples: int = 1000, **kwargs) -> torch.Tensor:
    """−log p̂(x) per example (N,), in nats; ``x`` and ``kwargs`` as ``iw_log_likelihood``."""
    return -iw_log_likelihood(model, guide, x, num_samples=num_samples, **kwargs)


def _average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n of ``values`` (n,), tied values sharing the mean of their ranks."""
    order = torch.argsort(values)
    _, counts = torch.unique_consecutive(values[order], return_counts=True)
    ends = counts.cumsum(0).double()  # last rank of each group of ties
    group_rank = ends - (counts.double() - 1) / 2  # (groups,)
    ranks = torch.empty_like(values, dtype=torch.float64)
    ranks[order] = group_rank.repeat_interleave(counts)
    return ranks


def auroc(scores_in: torch.Tensor, scores_out: torch.Tensor) -> float:
    """Area under the ROC curve for telling ``scores_out`` (positives, high) from
    ``scores_in``: P(out > in) + ½ P(out = in), by the Mann–Whitney U with averaged ties.

    >>> auroc(torch.tensor([0.1, 0.4, 0.6]), torch.tensor([0.8, 0.4]))  # (3 + 1 + ½) / 6
    0.75
    """
    scores_in, scores_out = scores_in.flatten(), scores_out.flatten()
    if len(scores_in) == 0 or len(scores_out) == 0:
        raise ValueError("auroc needs at least one score in each set")
    if scores_in.isnan().any() or scores_out.isnan().any():
        raise ValueError("auroc got NaN scores")
    ranks = _average_ranks(torch.cat([scores_in, scores_out]).double())
    n_in, n_out = len(scores_in), len(scores_out)
    u = ranks[n_in:].sum() - n_out * (n_out + 1) / 2  # pairs won by the out-of-set scores
    return (u / (n_in * n_out)).item()


@dataclass
class AnomalyResult:
    """AUROC of in- vs out-of-distribution scores, and the scores (−log p̂(x), nats)."""

    auroc: float
    scores_in: torch.Tensor
    scores_out: torch.Tensor


def anomaly_auroc(model, guide, in_data, out_data, *, num_samples: int = 1000,
                  **kwargs) -> AnomalyResult:
    """Score both sets by −log p̂(x); the AUROC of out-of-distribution (positive) vs in.

    Each set is anything ``iw_log_likelihood`` takes (a tensor (N, D), ``TensorData``...).
    A test split of ``load_dataset`` holds one fixed binarization; give both sets the same
    ``binarize`` to compare like with like.
    """
    scores_in = anomaly_scores(model, guide, in_data, num_samples=num_samples, **kwargs)
    scores_out = anomaly_scores(model, guide, out_data, num_samples=num_samples, **kwargs)
    return AnomalyResult(auroc(scores_in, scores_out), scores_in, scores_out)


__all__ = ["AnomalyResult", "anomaly_auroc", "anomaly_scores", "auroc"]
