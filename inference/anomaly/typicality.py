"""The typicality test (Nalisnick, Matsukawa, Teh & Lakshminarayanan, "Detecting
Out-of-Distribution Inputs to Deep Generative Models Using Typicality", arXiv:1906.02994,
2019).

Data drawn from a model's distribution have a mean negative log-likelihood close to the
distribution's entropy H, and data from elsewhere need not: a set that is *more* likely
than typical (MNIST under a Fashion-MNIST model) is as suspect as a less likely one. For a
batch of M inputs the statistic is::

    ε̂ = | (1/M) Σ_m −log p(x_m) − Ĥ |,

with Ĥ the mean −log p̂(x) of held-out in-distribution data (the validation split). It is
a test of batches, not of single inputs: M = 1 gives the two-sided per-example score
``|−log p̂(x) − Ĥ|``. The paper calibrates a threshold on bootstrapped validation batches;
here the batch statistics of in- and out-of-distribution sets are compared by AUROC.
"""

from __future__ import annotations

import torch

from inference.validate import positive_int


def typicality_scores(nll: torch.Tensor, entropy: float) -> torch.Tensor:
    """``|−log p̂(x) − Ĥ|`` per example (N,): the test with batches of one."""
    return (nll - entropy).abs()


def typicality_batches(nll: torch.Tensor, entropy: float, batch: int, *,
                       seed: int = 0) -> torch.Tensor:
    """ε̂ of random batches of ``batch`` examples (a seeded permutation cut into
    ⌊N / batch⌋ batches; a remainder is left out): shape (⌊N / batch⌋,).

    >>> typicality_batches(torch.tensor([1.0, 3.0, 5.0, 7.0]), 4.0, 4).tolist()
    [0.0]
    """
    positive_int("batch", batch)
    if batch > len(nll):
        raise ValueError(f"a typicality batch of {batch} needs at least {batch} examples, "
                         f"got {len(nll)}")
    order = torch.randperm(len(nll), generator=torch.Generator().manual_seed(seed))
    n = len(nll) // batch * batch
    means = nll[order[:n].to(nll.device)].reshape(-1, batch).mean(-1)  # (N // batch,)
    return (means - entropy).abs()


__all__ = ["typicality_batches", "typicality_scores"]
