"""DCI: disentanglement, completeness and informativeness (Eastwood & Williams 2018, "A
framework for the quantitative evaluation of disentangled representations").

Follows disentanglement_lib (``evaluation/metrics/dci.py``, Locatello et al. 2019): one
gradient-boosted tree classifier per factor, scikit-learn's defaults (100 trees of depth
3), fitted on ``num_train`` (10,000) random points; the absolute feature importances give
the importance matrix R (d, F).
"""

from __future__ import annotations

import numpy as np
import scipy.stats
import torch

from inference.disentangle.factors import GroundTruthData
from inference.disentangle.metrics.utils import (
    Representation,
    factor_codes,
    generator_of,
    sklearn_seed,
)


def disentanglement(importance: np.ndarray) -> float:
    """Σ_i ρ_i (1 − H_F(P_i·)), P_i· the importances of code dimension i normalized over
    the factors, H_F the entropy in base F, ρ_i the dimension's share of all importance."""
    per_code = 1.0 - scipy.stats.entropy(importance.T + 1e-11, base=importance.shape[1])
    if importance.sum() == 0.0:
        importance = np.ones_like(importance)
    weight = importance.sum(axis=1) / importance.sum()
    return float(np.sum(per_code * weight))


def completeness(importance: np.ndarray) -> float:
    """Σ_j ρ_j (1 − H_d(P̃_·j)): how few code dimensions capture each factor."""
    per_factor = 1.0 - scipy.stats.entropy(importance + 1e-11, base=importance.shape[0])
    if importance.sum() == 0.0:
        importance = np.ones_like(importance)
    weight = importance.sum(axis=0) / importance.sum()
    return float(np.sum(per_factor * weight))


def importance_matrix(codes, factors, codes_test, factors_test, seed: int,
                      n_estimators: int = 100):
    """R (d, F) and the mean train and test accuracies of the per-factor classifiers."""
    from sklearn.ensemble import GradientBoostingClassifier

    r = np.zeros((codes.shape[1], factors.shape[1]))
    train_acc, test_acc = [], []
    for j in range(factors.shape[1]):
        model = GradientBoostingClassifier(n_estimators=n_estimators, random_state=seed)
        model.fit(codes, factors[:, j])
        r[:, j] = np.abs(model.feature_importances_)
        train_acc.append(np.mean(model.predict(codes) == factors[:, j]))
        test_acc.append(np.mean(model.predict(codes_test) == factors_test[:, j]))
    return r, float(np.mean(train_acc)), float(np.mean(test_acc))


def dci(data: GroundTruthData, representation: Representation,
        generator: torch.Generator | int | None = None, *, num_train: int = 10_000,
        num_test: int = 5_000, n_estimators: int = 100) -> dict:
    """``disentanglement`` (does each code dimension capture at most one factor),
    ``completeness`` (is each factor captured by one dimension), ``informativeness`` (the
    classifiers' mean test accuracy; ``informativeness_train`` on the training points) and
    the ``importance`` matrix (d, F). ``n_estimators`` below the default 100 trades
    accuracy of the importances for time (say so when you report it)."""
    g = generator_of(generator)
    codes, factors = factor_codes(data, representation, num_train, g)
    codes_test, factors_test = factor_codes(data, representation, num_test, g)
    r, train, test = importance_matrix(codes, factors, codes_test, factors_test,
                                       sklearn_seed(g), n_estimators)
    return {"disentanglement": disentanglement(r), "completeness": completeness(r),
            "informativeness": test, "informativeness_train": train, "importance": r.tolist()}
