"""MIG, SAP, modularity and explicitness: how each factor spreads over the code dimensions.

Follows disentanglement_lib (``evaluation/metrics/mig.py``, ``sap_score.py``,
``modularity_explicitness.py``, Locatello et al. 2019) with its default sample sizes and
its 20-bin histogram discretization of the codes.
"""

from __future__ import annotations

import numpy as np
import torch

from inference.disentangle.factors import GroundTruthData
from inference.disentangle.metrics.utils import (
    Representation,
    discrete_entropy,
    discrete_mutual_info,
    factor_codes,
    fit_quietly,
    generator_of,
    histogram_discretize,
    sklearn_seed,
)


def mig_from_codes(codes: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> dict:
    """MIG of codes (n, d) and factors (n, F): (I_top1 − I_top2) / H per factor, averaged."""
    mi = discrete_mutual_info(histogram_discretize(codes, num_bins), factors)  # (d, F)
    entropy = discrete_entropy(factors)  # (F,)
    top = np.sort(mi, axis=0)[::-1]
    gaps = (top[0] - top[1]) / entropy if len(top) > 1 else top[0] / entropy
    return {"mig": float(np.mean(gaps)), "per_factor": gaps.tolist(), "mutual_info": mi.tolist()}


def mig(data: GroundTruthData, representation: Representation,
        generator: torch.Generator | int | None = None, *, num_train: int = 10_000,
        num_bins: int = 20) -> dict:
    """Mutual information gap (Chen et al. 2018, "Isolating sources of disentanglement in
    VAEs"): for each factor, the gap between the two code dimensions that share the most
    information with it, over the factor's entropy; averaged over factors (``mig``).
    ``num_train`` (10,000) random points; codes cut into ``num_bins`` (20) equal-width bins.
    ``mutual_info`` (d, F) is the matrix it reads. Invariant to permuting and (monotonically)
    rescaling code dimensions."""
    codes, factors = factor_codes(data, representation, num_train, generator_of(generator))
    return mig_from_codes(codes, factors, num_bins)


def _sap_matrix(codes, factors, codes_test, factors_test, continuous: bool, seed: int):
    from sklearn.svm import LinearSVC

    d, f = codes.shape[1], factors.shape[1]
    scores = np.zeros((d, f))
    converged = True
    for i in range(d):
        for j in range(f):
            if continuous:  # R² of the single-feature linear fit
                cov = np.cov(codes[:, i], factors[:, j], ddof=1)
                scores[i, j] = cov[0, 1] ** 2 / (cov[0, 0] * cov[1, 1]) if cov[0, 0] > 1e-12 else 0
            else:
                svm = LinearSVC(C=0.01, class_weight="balanced", random_state=seed)
                converged &= fit_quietly(svm, codes[:, i:i + 1], factors[:, j])
                scores[i, j] = np.mean(svm.predict(codes_test[:, i:i + 1]) == factors_test[:, j])
    return scores, converged


def sap(data: GroundTruthData, representation: Representation,
        generator: torch.Generator | int | None = None, *, num_train: int = 10_000,
        num_test: int = 5_000, continuous_factors: bool = False) -> dict:
    """Separated attribute predictability (Kumar et al. 2018, "Variational inference of
    disentangled latent concepts"): a score per (code dimension, factor), the gap between
    the two best dimensions per factor, averaged (``sap``).

    ``continuous_factors=False`` (disentanglement_lib's default): the score is the test
    accuracy of a linear SVM (C = 0.01, balanced classes) predicting the factor from that one
    dimension; with many ordered values a one-dimensional one-vs-rest classifier cannot
    separate the middle values, so even the true factors score well below 1 on dSprites.
    ``True``: the R² of a linear fit, 1 for the true factors."""
    g = generator_of(generator)
    codes, factors = factor_codes(data, representation, num_train, g)
    codes_test, factors_test = factor_codes(data, representation, num_test, g)
    scores, converged = _sap_matrix(codes, factors, codes_test, factors_test,
                                    continuous_factors, sklearn_seed(g))
    top = np.sort(scores, axis=0)
    return {"sap": float(np.mean(top[-1] - top[-2])), "score_matrix": scores.tolist(),
            "converged": converged}


def modularity_from_mi(mi: np.ndarray) -> float:
    """Ridgeway & Zemel (2018): 1 − Σ_{j≠top} I_ij² / ((F − 1) max_j I_ij²) per code
    dimension i, averaged; a dimension that shares nothing with any factor counts 0."""
    sq = mi ** 2  # (d, F)
    top = sq.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = (sq.sum(axis=1) - top) / (top * (sq.shape[1] - 1))
    score = 1 - delta
    score[top == 0] = 0
    return float(np.mean(score))


def _auc(model, x: np.ndarray, y: np.ndarray) -> float:
    """Macro-averaged one-vs-rest ROC AUC of the classes the model knows, over the classes
    present in y with both labels."""
    from sklearn.metrics import roc_auc_score

    proba = model.predict_proba(x)  # (n, classes)
    truth = y[:, None] == model.classes_[None, :]
    keep = truth.any(0) & ~truth.all(0)
    return float(roc_auc_score(truth[:, keep], proba[:, keep], average="macro"))


def modularity_explicitness(data: GroundTruthData, representation: Representation,
                            generator: torch.Generator | int | None = None, *,
                            num_train: int = 10_000, num_test: int = 5_000,
                            num_bins: int = 20) -> dict:
    """Modularity and explicitness (Ridgeway & Zemel 2018, "Learning deep disentangled
    embeddings with the F-statistic loss").

    ``modularity``: from the discretized mutual information (d, F), whether each code
    dimension depends on one factor only. ``explicitness`` (test; ``explicitness_train``
    too): a logistic regression per factor on all the codes (standardized with the training
    mean and deviation), scored by the macro one-vs-rest ROC AUC; 0.5 is chance. As in
    disentanglement_lib, except the logistic regression (today's scikit-learn default,
    ``max_iter`` 1000) and classes absent from the test sample, which are left out of the
    average instead of failing."""
    from sklearn.linear_model import LogisticRegression

    g = generator_of(generator)
    codes, factors = factor_codes(data, representation, num_train, g)
    codes_test, factors_test = factor_codes(data, representation, num_test, g)
    mi = discrete_mutual_info(histogram_discretize(codes, num_bins), factors)
    mean, std = codes.mean(0), codes.std(0)
    std = np.where(std > 0, std, 1.0)
    train, test = (codes - mean) / std, (codes_test - mean) / std
    seed, auc_train, auc_test, converged = sklearn_seed(g), [], [], True
    for j in range(factors.shape[1]):
        model = LogisticRegression(random_state=seed, max_iter=1000)
        converged &= fit_quietly(model, train, factors[:, j])
        auc_train.append(_auc(model, train, factors[:, j]))
        auc_test.append(_auc(model, test, factors_test[:, j]))
    return {"modularity": modularity_from_mi(mi), "explicitness": float(np.mean(auc_test)),
            "explicitness_train": float(np.mean(auc_train)), "converged": converged}
