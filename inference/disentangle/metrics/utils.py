"""What every metric shares: codes of sampled factors, discretization, mutual information.

Follows disentanglement_lib's ``evaluation/metrics/utils.py`` (Locatello et al. 2019), with
points as rows: codes are (n, d) and factors (n, F) here, where the library holds (d, n)
and (F, n).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch

from inference.disentangle.factors import GroundTruthData, as_generator

Representation = Callable[[torch.Tensor], torch.Tensor]  # observations (n, D) -> codes (n, d)
CHUNK = 1000  # observations rendered and encoded at a time


def represent(data: GroundTruthData, representation: Representation,
              factors: torch.Tensor, chunk: int = CHUNK) -> np.ndarray:
    """The codes (n, d), float64, of the observations of factor combinations (n, F),
    rendered and encoded ``chunk`` at a time."""
    out = []
    with torch.no_grad():
        for start in range(0, len(factors), chunk):
            x = data.observations(factors[start:start + chunk])
            code = torch.as_tensor(representation(x))
            if code.dim() != 2 or len(code) != len(x):
                raise ValueError(f"a representation function maps observations (n, D) to "
                                 f"codes (n, d); it returned {tuple(code.shape)} for "
                                 f"{tuple(x.shape)}")
            out.append(code.detach().double().cpu().numpy())
    return np.concatenate(out)


def factor_codes(data: GroundTruthData, representation: Representation, n: int,
                 generator: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random combinations: their codes (n, d) and factors (n, F) (the library's
    ``generate_batch_factor_code``)."""
    factors = data.sample_factors(n, generator)
    return represent(data, representation, factors), factors.numpy()


def sklearn_seed(generator: torch.Generator) -> int:
    """A seed for scikit-learn's ``random_state``, drawn from the metric's generator."""
    return int(torch.randint(2**31 - 1, (1,), generator=generator))


def histogram_discretize(codes: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Each code dimension cut into ``num_bins`` equal-width bins over its range (n, d) ->
    bin numbers 1..num_bins (the library's ``_histogram_discretize``)."""
    out = np.zeros(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram(codes[:, j], num_bins)[1][:-1]
        out[:, j] = np.digitize(codes[:, j], edges)
    return out


def discrete_mutual_info(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """I(code_i; factor_j) in nats between discrete columns: (d, F)."""
    from sklearn.metrics import mutual_info_score

    return np.array([[mutual_info_score(factors[:, j], codes[:, i])
                      for j in range(factors.shape[1])] for i in range(codes.shape[1])])


def discrete_entropy(factors: np.ndarray) -> np.ndarray:
    """H(factor_j) in nats of discrete columns: (F,)."""
    from sklearn.metrics import mutual_info_score

    return np.array([mutual_info_score(factors[:, j], factors[:, j])
                     for j in range(factors.shape[1])])


def fit_quietly(model, x: np.ndarray, y: np.ndarray) -> bool:
    """``model.fit(x, y)``; False if scikit-learn warned that it did not converge."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(x, y)
    for w in caught:  # any other warning goes on as it came
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return not any(issubclass(w.category, ConvergenceWarning) for w in caught)


def generator_of(generator: torch.Generator | int | None) -> torch.Generator:
    return as_generator(generator)
