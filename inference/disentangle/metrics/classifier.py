"""The BetaVAE and FactorVAE scores: which factor was held fixed, told from the codes.

Both follow disentanglement_lib (``evaluation/metrics/beta_vae.py`` and ``factor_vae.py``,
Locatello et al. 2019) with its default sample sizes. Chance level is 1 / F (F factors),
not 0: a representation that carries nothing scores about 1 / F.
"""

from __future__ import annotations

import numpy as np
import torch

from inference.disentangle.factors import GroundTruthData
from inference.disentangle.metrics.utils import (
    Representation,
    fit_quietly,
    generator_of,
    represent,
    sklearn_seed,
)

POINTS_PER_CHUNK = 16  # training points whose batches are rendered and encoded together


def _pairs_features(data, representation, k: torch.Tensor, batch_size: int,
                    g: torch.Generator) -> np.ndarray:
    """Per point p: mean ``|r(x1) − r(x2)|`` over a batch of pairs sharing factor k[p] (P, d)."""
    p, f = len(k), data.num_factors
    first = data.sample_factors(p * batch_size, g).view(p, batch_size, f)
    second = data.sample_factors(p * batch_size, g).view(p, batch_size, f)
    rows = torch.arange(p)
    second[rows, :, k] = first[rows, :, k]  # the fixed factor, shared within each pair
    codes1 = represent(data, representation, first.view(-1, f))
    codes2 = represent(data, representation, second.view(-1, f))
    return np.abs(codes1 - codes2).reshape(p, batch_size, -1).mean(1)


def _beta_vae_points(data, representation, n: int, batch_size: int, g) -> tuple:
    labels = torch.randint(data.num_factors, (n,), generator=g)
    feats = [_pairs_features(data, representation, labels[s:s + POINTS_PER_CHUNK], batch_size, g)
             for s in range(0, n, POINTS_PER_CHUNK)]
    return np.concatenate(feats), labels.numpy()


def beta_vae_score(data: GroundTruthData, representation: Representation,
                   generator: torch.Generator | int | None = None, *, batch_size: int = 64,
                   num_train: int = 10_000, num_eval: int = 5_000) -> dict[str, float]:
    """BetaVAE score (Higgins et al. 2017, "β-VAE: learning basic visual concepts with a
    constrained variational framework"): each point picks a factor k, draws ``batch_size``
    pairs of observations that share factor k (all else random) and averages
    ``|r(x1) − r(x2)|``; a logistic regression predicts k from that. The score is its accuracy
    on ``num_eval`` held-out points (``eval_accuracy``).

    disentanglement_lib's defaults (batch 64, 10,000 train, 5,000 eval). Its logistic
    regression was scikit-learn's default of the time; here it is today's default (lbfgs,
    multinomial) with ``max_iter`` 1000; ``converged`` says whether it converged.
    """
    from sklearn.linear_model import LogisticRegression

    g = generator_of(generator)
    x_train, y_train = _beta_vae_points(data, representation, num_train, batch_size, g)
    x_eval, y_eval = _beta_vae_points(data, representation, num_eval, batch_size, g)
    model = LogisticRegression(random_state=sklearn_seed(g), max_iter=1000)
    converged = fit_quietly(model, x_train, y_train)
    return {"train_accuracy": float(np.mean(model.predict(x_train) == y_train)),
            "eval_accuracy": float(model.score(x_eval, y_eval)), "converged": converged}


def _votes(data, representation, n: int, batch_size: int, g, scale: np.ndarray,
           active: np.ndarray) -> np.ndarray:
    """Votes (F, d): per point, the fixed factor and the active dimension of least
    normalized variance within its batch."""
    f = data.num_factors
    votes = np.zeros((f, len(scale)), dtype=np.int64)
    labels = torch.randint(f, (n,), generator=g)
    active_index = np.flatnonzero(active)
    for s in range(0, n, POINTS_PER_CHUNK):
        k = labels[s:s + POINTS_PER_CHUNK]
        p = len(k)
        factors = data.sample_factors(p * batch_size, g).view(p, batch_size, f)
        rows = torch.arange(p)
        factors[rows, :, k] = factors[rows, 0, k].unsqueeze(-1)  # factor k fixed per batch
        codes = represent(data, representation, factors.view(-1, f)).reshape(p, batch_size, -1)
        local = codes.var(axis=1, ddof=1)  # (p, d)
        chosen = np.argmin(local[:, active] / scale[active], axis=1)  # (p,)
        np.add.at(votes, (k.numpy(), active_index[chosen]), 1)
    return votes


def factor_vae_score(data: GroundTruthData, representation: Representation,
                     generator: torch.Generator | int | None = None, *, batch_size: int = 64,
                     num_train: int = 10_000, num_eval: int = 5_000,
                     num_variance_estimate: int = 10_000,
                     prune_threshold: float = 0.05) -> dict[str, float]:
    """FactorVAE score (Kim & Mnih 2018, "Disentangling by factorising"): each point fixes
    one factor k over a batch of ``batch_size`` observations; the code dimension whose
    variance within the batch, divided by its variance over the data, is smallest votes for
    k. A majority-vote classifier (each dimension predicts the factor it voted for most) is
    fitted on ``num_train`` points; the score is its accuracy on ``num_eval`` others
    (``eval_accuracy``).

    As in disentanglement_lib: variances with ddof 1 over ``num_variance_estimate`` random
    points; dimensions whose standard deviation is below ``prune_threshold`` (0.05) do not
    vote (collapsed units), and a representation with no active dimension scores 0. The
    score is invariant to rescaling a dimension while its standard deviation stays above
    the threshold.
    """
    g = generator_of(generator)
    variances = represent(data, representation,
                          data.sample_factors(num_variance_estimate, g)).var(axis=0, ddof=1)
    active = np.sqrt(variances) >= prune_threshold
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
    train = _votes(data, representation, num_train, batch_size, g, variances, active)
    evals = _votes(data, representation, num_eval, batch_size, g, variances, active)
    classifier = np.argmax(train, axis=0)  # (d,): the factor each dimension stands for
    columns = np.arange(train.shape[1])
    return {"train_accuracy": float(train[classifier, columns].sum() / train.sum()),
            "eval_accuracy": float(evals[classifier, columns].sum() / evals.sum()),
            "num_active_dims": int(active.sum())}
