"""Likelihood ratio against a background model (Ren, Liu, Fertig, Snoek, Poplin, DePristo,
Dillon & Lakshminarayanan, "Likelihood Ratios for Out-of-Distribution Detection", NeurIPS
2019).

A background model of the same architecture is trained on the training data with a share
``rate`` of its pixels replaced by random values in every minibatch, and with an L2 penalty
on its weights. It learns the population-level statistics (how dark, how smooth) but not
the semantic content, so the ratio

    LLR(x) = log p_θ(x) − log p_θ0(x)

cancels what both models share. The anomaly score is −LLR = −log p_θ(x) + log p_θ0(x).
Ren et al. replace a pixel by a value drawn uniformly from its range: here a uniform grey
level in [0, 1], or a fair coin for a binary (or dynamically binarized) batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from inference.data import as_data
from inference.validate import non_negative_float


@dataclass
class PerturbedData:
    """Training data whose every minibatch has a share ``rate`` of its values replaced by
    uniform noise (a fair coin where the batch is binary). It serves batches as
    :class:`~inference.data.TensorData` does, so :func:`~inference.fit` trains on it."""

    data: Any
    rate: float
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        if not 0 <= self.rate <= 1:
            raise ValueError(f"the perturbation rate must be in [0, 1], got {self.rate!r}")
        self.data = as_data(self.data)
        self.info = {**getattr(self.data, "info", {}), "perturbed": self.rate}

    def __len__(self) -> int:
        return len(self.data)

    def to(self, device) -> PerturbedData:
        return PerturbedData(self.data.to(device), self.rate)

    def perturb(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with each value replaced by noise with probability ``rate``."""
        binary = bool(((x == 0) | (x == 1)).all())
        noise = torch.bernoulli(torch.full_like(x, 0.5)) if binary else torch.rand_like(x)
        return torch.where(torch.rand_like(x) < self.rate, noise, x)

    def batches(self, batch_size: int, *, shuffle: bool = False, generator=None):
        for x, y in self.data.batches(batch_size, shuffle=shuffle, generator=generator):
            yield self.perturb(x), y

    def head(self, n: int):
        x, y = self.data.head(n)
        return self.perturb(x), y


def train_background(model, guide, train, *, rate: float = 0.2, l2: float = 1e-4,
                     lr: float = 1e-3, **fit_kwargs):
    """Train ``model`` and ``guide`` (a fresh pair, usually the foreground's architecture)
    as Ren et al.'s background model: :func:`~inference.fit` on :class:`PerturbedData` of
    ``train`` with Adam's L2 penalty ``l2`` (``weight_decay``). ``fit_kwargs`` go to ``fit``
    (``epochs``, ``checkpoint``, ``resume``...); returns its ``History``."""
    from inference.train import fit

    non_negative_float("l2", l2)
    return fit(model, guide, PerturbedData(train, rate), lr=lr,
               optimizer=lambda params: torch.optim.Adam(params, lr=lr, weight_decay=l2),
               **fit_kwargs)


def ratio_scores(nll: torch.Tensor, background_nll: torch.Tensor) -> torch.Tensor:
    """−LLR(x) = −log p_θ(x) + log p_θ0(x) (N,): the two models' −log p̂(x)."""
    if nll.shape != background_nll.shape:
        raise ValueError(f"the foreground's and the background's scores differ in shape: "
                         f"{tuple(nll.shape)} and {tuple(background_nll.shape)}")
    return nll - background_nll


__all__ = ["PerturbedData", "ratio_scores", "train_background"]
