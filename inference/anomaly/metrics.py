"""How well a score tells out-of-distribution data from the data a model was trained on.

The out-of-distribution examples are the positives and a high score means "anomalous". Three
figures, as in the out-of-distribution literature (Hendrycks & Gimpel, "A Baseline for
Detecting Misclassified and Out-of-Distribution Examples in Neural Networks", ICLR 2017):

* AUROC: the area under the ROC curve, P(score_out > score_in) + ½ P(tie); 0.5 is chance.
* AUPRC: average precision with the out-of-distribution set as positives
  (``sklearn.metrics.average_precision_score``); chance is the positives' share.
* ``FPR@95``: the share of in-distribution examples flagged at the lowest threshold that flags
  95% of the out-of-distribution ones (lower is better).

All three come from scikit-learn's curves. :func:`bootstrap` gives their standard errors by
resampling each set with replacement (seeded).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import auc, average_precision_score, roc_auc_score, roc_curve

from inference.validate import positive_int

METRICS = ("auroc", "auprc", "fpr95")


def _arrays(scores_in, scores_out) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores) as float64 arrays: 0 for in-distribution, 1 for out."""
    a = torch.as_tensor(scores_in).detach().flatten().double().cpu().numpy()
    b = torch.as_tensor(scores_out).detach().flatten().double().cpu().numpy()
    if len(a) == 0 or len(b) == 0:
        raise ValueError(f"out-of-distribution metrics need at least one score in each set, "
                         f"got {len(a)} in and {len(b)} out")
    scores = np.concatenate([a, b])
    if not np.isfinite(scores).all():
        raise ValueError(f"{int((~np.isfinite(scores)).sum())} scores are NaN or infinite; "
                         f"metrics need finite scores (check the model's log-densities)")
    return np.concatenate([np.zeros(len(a)), np.ones(len(b))]), scores


def auroc(scores_in, scores_out) -> float:
    """Area under the ROC curve of ``scores_out`` (positives) against ``scores_in``.

    >>> auroc(torch.tensor([0.1, 0.4, 0.6]), torch.tensor([0.8, 0.4]))  # (3 + 1 + ½) / 6
    0.75
    """
    labels, scores = _arrays(scores_in, scores_out)
    return float(roc_auc_score(labels, scores))


def auprc(scores_in, scores_out) -> float:
    """Average precision with the out-of-distribution examples as positives."""
    labels, scores = _arrays(scores_in, scores_out)
    return float(average_precision_score(labels, scores))


def fpr_at_tpr(scores_in, scores_out, tpr: float = 0.95) -> float:
    """The false-positive rate at the first ROC point whose true-positive rate reaches
    ``tpr``: the share of in-distribution examples scoring at least the threshold that
    flags a share ``tpr`` of the out-of-distribution ones.

    >>> fpr_at_tpr(torch.tensor([0.0, 1.0, 2.0, 3.0]), torch.tensor([2.5, 4.0]), 0.95)
    0.25
    """
    if not 0 < tpr <= 1:
        raise ValueError(f"tpr must be in (0, 1], got {tpr!r}")
    labels, scores = _arrays(scores_in, scores_out)
    fpr, tpr_curve, _ = roc_curve(labels, scores, drop_intermediate=False)
    return _fpr_at(fpr, tpr_curve, tpr)


def _fpr_at(fpr: np.ndarray, tpr_curve: np.ndarray, tpr: float) -> float:
    return float(fpr[np.searchsorted(tpr_curve, tpr - 1e-12, side="left")])


def ood_metrics(scores_in, scores_out) -> dict[str, float]:
    """{"auroc", "auprc", "fpr95"} of one pair of score sets (one ROC curve for the first
    and last: the AUROC as the trapezoidal area under it, as ``roc_auc_score`` computes)."""
    labels, scores = _arrays(scores_in, scores_out)
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    return {"auroc": float(auc(fpr, tpr)),
            "auprc": float(average_precision_score(labels, scores)),
            "fpr95": _fpr_at(fpr, tpr, 0.95)}


def bootstrap(scores_in, scores_out, *, rounds: int = 200, seed: int = 0) -> dict[str, float]:
    """Bootstrap standard errors of :func:`ood_metrics`: each round resamples both sets with
    replacement (their own sizes), seeded; returns {"auroc": se, "auprc": se, "fpr95": se}.

    They cover the sampling of the test examples only; a score that is itself random
    (importance sampling, regret's optimization) adds its own noise on top."""
    positive_int("rounds", rounds)
    a, b = (torch.as_tensor(s).detach().flatten().double().cpu() for s in (scores_in,
                                                                               scores_out))
    _arrays(a, b)  # the same checks, once
    g = torch.Generator().manual_seed(seed)
    draws = {m: [] for m in METRICS}
    for _ in range(rounds):
        ra = a[torch.randint(len(a), (len(a),), generator=g)]
        rb = b[torch.randint(len(b), (len(b),), generator=g)]
        for name, value in ood_metrics(ra, rb).items():
            draws[name].append(value)
    return {name: float(np.std(values, ddof=1)) if rounds > 1 else 0.0
            for name, values in draws.items()}


__all__ = ["METRICS", "auprc", "auroc", "bootstrap", "fpr_at_tpr", "ood_metrics"]
